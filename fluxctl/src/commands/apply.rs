//! `fluxctl apply -f FILE`: plan, apply against the planned versions, optionally wait until
//! every target is compliant.

use std::collections::BTreeMap;
use std::time::Duration;

use flux_core::model::parse_duration;
use serde_json::json;

use crate::context::Ctx;
use crate::error::{CliResult, ok_or_1};
use crate::output::{emit, print_json, view};
use crate::states;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    state: states::FileArgs,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait until every target is compliant; exit 1 if one fails or the timeout passes.
    #[arg(long, short = 'w')]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
}

/// `fluxctl apply`: plan, apply against the planned versions, optionally wait.
///
/// The two formats differ in more than printing: a table shows the plan as soon as it is
/// applied and the convergence after the wait, JSON is one document at the end.
pub async fn run(ctx: &Ctx, a: Args) -> CliResult {
    let api = ctx.client()?;
    let states::Planned {
        file,
        text,
        plan: planned,
    } = a.state.plan(&api).await?;
    if a.dry_run {
        emit(
            ctx.out,
            &view(&planned, |p| {
                format!(
                    "{}(dry run: nothing changed)\n",
                    states::render_plan(p, true)
                )
            }),
        )?;
        return Ok(());
    }
    let applied = if planned.has_changes() {
        states::apply(&api, &file, &text, a.state.prune, &planned).await?
    } else {
        planned
    };
    if !ctx.out.is_json() {
        print!("{}", states::render_plan(&applied, true));
        if !applied.has_changes() {
            println!("no changes");
        }
    }
    let want: BTreeMap<String, u64> = applied
        .items
        .iter()
        .filter(|i| i.action != flux_core::state::PlanAction::Delete)
        .map(|i| (i.name.clone(), i.to_version.unwrap_or(i.from_version)))
        .collect();
    let converged = if a.wait {
        Some(states::wait(&api, &want, a.timeout, ctx.out.is_json()).await?)
    } else {
        None
    };
    if ctx.out.is_json() {
        print_json(&json!({"plan": applied, "convergence": converged}))?;
    }
    let Some(c) = converged else {
        return Ok(());
    };
    if !ctx.out.is_json() {
        for e in &c.empty {
            eprintln!("warning: state {e} selects no agent");
        }
        println!(
            "{} of {} targets compliant, {} failed",
            c.compliant, c.targets, c.failed
        );
        for f in &c.failures {
            eprintln!("failed: {f}");
        }
    }
    ok_or_1(c.failed == 0)
}
