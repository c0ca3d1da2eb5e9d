//! `fluxctl diff -f FILE`: what `apply` would change. Exit 0 when nothing would, 1 when
//! something would, 2 on an error (like `diff` and `kubectl diff`).

use flux_core::state::Plan;

use crate::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{emit, view};
use crate::states;

/// `diff` takes what `apply` plans with.
pub type Args = states::FileArgs;

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
    let planned = args.plan(&api).await?;
    emit(
        ctx.out,
        &view(&planned.plan, |p| states::render_plan(p, false)),
    )?;
    Ok(planned.plan)
}
