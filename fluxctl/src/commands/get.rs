//! `fluxctl get states [NAME]`: desired states with their targets' status; with a name, the
//! per-target detail.

use clap::Subcommand;
use flux_core::state::StateView;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, emit};
use crate::states;

#[derive(Subcommand, Debug)]
pub enum GetCmd {
    /// Desired states with their targets' status; with a name, the per-target detail.
    States { name: Option<String> },
}

impl Render for StateView {
    fn render(&self) -> String {
        states::state_detail(self)
    }
}

impl Render for [StateView] {
    fn render(&self) -> String {
        format!("{}\n", states::states_table(self))
    }
}

pub async fn run(ctx: &Ctx, cmd: GetCmd) -> CliResult {
    let GetCmd::States { name } = cmd;
    if let Some(n) = &name {
        states::check_name(n)?;
    }
    let api = ctx.client()?;
    match name {
        Some(n) => {
            let v: StateView = api.get(&format!("/v1/states/{n}")).await?;
            emit(ctx.out, &v)?;
        }
        None => {
            let v: Vec<StateView> = api.get("/v1/states").await?;
            emit(ctx.out, v.as_slice())?;
        }
    }
    Ok(())
}
