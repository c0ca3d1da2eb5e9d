//! `fluxctl agents list|get`: the tenant's agents with their state, slots and labels.

use clap::Subcommand;
use flux_core::model::Agent;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, age, emit, table};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// List agents of the tenant.
    List,
    /// Show one agent.
    Get { id: String },
}

impl Render for [Agent] {
    fn render(&self) -> String {
        let mut t = table(&["AGENT", "STATE", "SLOTS", "LABELS", "LAST SEEN", "VERSION"]);
        for a in self {
            t.add_row(vec![
                a.node_id.clone(),
                a.state.as_str().to_string(),
                a.slots.to_string(),
                a.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                format!("{} ago", age(a.last_seen)),
                a.version.clone().unwrap_or_default(),
            ]);
        }
        format!("{t}\n")
    }
}

/// One agent is shown as a table of one row.
impl Render for Agent {
    fn render(&self) -> String {
        std::slice::from_ref(self).render()
    }
}

pub async fn run(ctx: &Ctx, cmd: AgentsCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        AgentsCmd::List => {
            let agents: Vec<Agent> = api.get("/v1/agents").await?;
            emit(ctx.out, agents.as_slice())?;
        }
        AgentsCmd::Get { id } => {
            let agent: Agent = api.get(&format!("/v1/agents/{id}")).await?;
            emit(ctx.out, &agent)?;
        }
    }
    Ok(())
}
