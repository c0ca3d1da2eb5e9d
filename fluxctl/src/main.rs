//! `fluxctl`, the FluxForge command-line interface: tokens, jobs, desired state, backups, chaos
//! runs and benchmarks, with tables for people and `-o json` for scripts.
//!
//! Exit codes: 0 success; 1 an error (message on stderr); 2 bad usage. `diff` exits 0 when
//! nothing would change, 1 when something would and 2 on an error. `job run --wait` exits
//! with the remote command's exit code, 128+N when it was killed by signal N, 124 on timeout,
//! 130 when cancelled and 127 when it could not start. `chaos run` exits 0 when every
//! invariant held, 1 on a violation and 2 when the run could not be carried out (interrupted
//! included).
//!
//! Layout: [`cli`] is the clap tree, [`commands`] holds one module per command, [`context`]
//! resolves the server and credentials, [`output`] prints tables or JSON, [`error`] carries
//! each failure's exit code; [`states`], [`bench`] and [`chaos`] are the engines behind
//! `apply`/`diff`, `bench` and `chaos run`.

mod bench;
mod chaos;
mod cli;
mod commands;
mod config;
mod context;
mod error;
mod output;
mod states;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: under load, glibc's malloc spent about a fifth of
/// fluxd's samples in its own code and arena-lock waits (`scripts/profile.sh`; README, engine
/// figures).
/// `fluxctl bench` shares the machine with the node it drives, so it uses the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let out = cli.output;
    match commands::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => e.report(out),
    }
}
