//! `fluxctl diff -f FILE`: what `apply` would change. Exit 0 when nothing would, 1 when
//! something would, 2 on an error (like `diff` and `kubectl diff`).

use std::path::PathBuf;

use flux_core::state::Plan;

use crate::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{emit, view};
use crate::states;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// State file (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Include the deletions `apply --prune` would make.
    #[arg(long)]
    prune: bool,
}

pub async fn run(ctx: &Ctx, args: Args) -> CliResult {
    // diff reserves 1 for "changes found"; its errors are 2.
    let plan = show(ctx, &args).await.map_err(|e| CliError::new(e, 2))?;
    if plan.has_changes() {
        Err(CliError::code(1))
    } else {
        Ok(())
    }
}

async fn show(ctx: &Ctx, args: &Args) -> anyhow::Result<Plan> {
    let api = ctx.client()?;
    let (file, text) = states::read_file(&args.file)?;
    let plan = states::plan(&api, &file, &text, args.prune).await?;
    emit(ctx.out, &view(&plan, |p| states::render_plan(p, false)))?;
    Ok(plan)
}
