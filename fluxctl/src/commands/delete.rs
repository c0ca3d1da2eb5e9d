//! `fluxctl delete state NAME`: delete a desired state, optionally only at a given version.

use clap::Subcommand;
use flux_core::replies::StateDeleted;
use reqwest::Method;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{SortedKeys, emit, view};
use crate::states;

#[derive(Subcommand, Debug)]
pub enum DeleteCmd {
    /// Delete a desired state (its agents are left as they are).
    State {
        name: String,
        /// Delete only if the state is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
}

pub async fn run(ctx: &Ctx, cmd: DeleteCmd) -> CliResult {
    let DeleteCmd::State { name, if_version } = cmd;
    states::check_name(&name)?;
    let api = ctx.client()?;
    let path = format!("/v1/states/{name}");
    let reply: StateDeleted =
        super::job::send_if_match(&api, Method::DELETE, &path, None, if_version).await?;
    emit(
        ctx.out,
        &SortedKeys(&view(&reply, |r| {
            format!("deleted state {name} (version {})\n", r.version)
        })),
    )?;
    Ok(())
}
