//! `fluxctl completions SHELL`: shell completions generated from the clap tree in
//! [`crate::cli`] (the copies shipped in `completions/` are kept current by a test).

use clap::CommandFactory;

use crate::cli::Cli;
use crate::error::CliResult;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

pub fn run(args: Args) -> CliResult {
    clap_complete::generate(
        args.shell,
        &mut Cli::command(),
        "fluxctl",
        &mut std::io::stdout(),
    );
    Ok(())
}
