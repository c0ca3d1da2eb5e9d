//! `fluxctl state resume NAME`: lift the halt that a state's rollout put on its remediation
//! (more repairs failed than its `max_errors`). The failed repairs counted so far are forgiven
//! and the reconciler starts applies again, within `max_concurrency`.
//!
//! Guarantees: a state that is not halted is left as it is (the reply says so); a state without
//! a `rollout` table is an error (exit 1, the server's 409 message).

use clap::Subcommand;
use flux_core::state::StateView;
use serde_json::json;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{emit, view};
use crate::states;

#[derive(Subcommand, Debug)]
pub enum StateCmd {
    /// Resume the remediation a state's rollout halted (its failed repairs are forgiven).
    Resume { name: String },
}

pub async fn run(ctx: &Ctx, cmd: StateCmd) -> CliResult {
    let StateCmd::Resume { name } = cmd;
    states::check_name(&name)?;
    let api = ctx.client()?;
    let before: StateView = api.get(&format!("/v1/states/{name}")).await?;
    let was_halted = before.rollout.as_ref().is_some_and(|r| r.halted);
    let v: StateView = api
        .post(&format!("/v1/states/{name}/resume"), &json!({}))
        .await?;
    emit(
        ctx.out,
        &view(&v, |v| {
            let r = v.rollout.as_ref();
            match r {
                Some(r) if r.halted => format!("state {} is still halted\n", v.name),
                Some(_) if !was_halted => {
                    format!("state {} was not halted: nothing to resume\n", v.name)
                }
                Some(r) => format!(
                    "state {} resumed: up to {} repairs at once, {} more failed repairs allowed\n",
                    v.name,
                    r.max_concurrency,
                    r.max_errors + 1 - r.failed_repairs.min(r.max_errors + 1)
                ),
                None => format!("state {} has no rollout\n", v.name),
            }
        }),
    )?;
    Ok(())
}
