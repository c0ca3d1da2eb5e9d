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
    States {
        name: Option<String>,
        /// Keep it current: print it again whenever a state event arrives (with -o json, print
        /// each state event as one JSON line instead).
        #[arg(short, long)]
        watch: bool,
    },
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
    let GetCmd::States { name, watch } = cmd;
    if let Some(n) = &name {
        states::check_name(n)?;
    }
    let api = ctx.client()?;
    if watch {
        // Opened before the first listing, so that no change after it is missed.
        let mut w = super::events::Watcher::new(api.with_token(api.token()), "state.*");
        w.open().await?;
        loop {
            show(ctx, &api, name.as_deref()).await?;
            if ctx.out.is_json() {
                loop {
                    for e in w.next_batch().await? {
                        if name
                            .as_deref()
                            .is_none_or(|n| e.event.object.split('/').next() == Some(n))
                        {
                            println!("{}", serde_json::to_string(&e)?);
                        }
                    }
                }
            }
            w.next_batch().await?;
            println!();
        }
    }
    show(ctx, &api, name.as_deref()).await?;
    Ok(())
}

async fn show(
    ctx: &Ctx,
    api: &flux_core::client::ApiClient,
    name: Option<&str>,
) -> anyhow::Result<()> {
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
