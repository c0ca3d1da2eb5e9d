//! `fluxctl delete state NAME`: delete a desired state, optionally only at a given version.

use std::time::Duration;

use anyhow::Context as _;
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
    let headers = super::job::if_match(if_version);
    let resp = api
        .send_with_headers(
            Method::DELETE,
            &format!("/v1/states/{name}"),
            None,
            Duration::from_secs(30),
            &headers,
        )
        .await?;
    let reply: StateDeleted = resp.json().await.context("decoding the reply")?;
    emit(
        ctx.out,
        &SortedKeys(&view(&reply, |r| {
            format!("deleted state {name} (version {})\n", r.version)
        })),
    )?;
    Ok(())
}
