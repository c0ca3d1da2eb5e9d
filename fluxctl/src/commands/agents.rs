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
    /// Stop new work reaching an agent; what it runs finishes.
    Drain { id: String },
    /// Let new work reach a drained agent again.
    Uncordon { id: String },
    /// End every credential of an agent issued before now: it is refused from its next call
    /// and its attempts are requeued as for a dead agent. It can enroll again later.
    Revoke { id: String },
}

impl Render for [Agent] {
    fn render(&self) -> String {
        let mut t = table(&["AGENT", "STATE", "SLOTS", "LABELS", "LAST SEEN", "VERSION"]);
        for a in self {
            t.add_row(vec![
                a.node_id.clone(),
                state_text(a),
                a.slots.to_string(),
                a.labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
                if a.last_seen == 0 {
                    "never".to_string()
                } else {
                    format!("{} ago", age(a.last_seen))
                },
                a.version.clone().unwrap_or_default(),
            ]);
        }
        format!("{t}\n")
    }
}

/// The liveness state, and whether it is drained or revoked.
fn state_text(a: &Agent) -> String {
    let mut s = a.state.as_str().to_string();
    if a.revoked_at.is_some() {
        s.push_str(",revoked");
    }
    if a.drained {
        s.push_str(",drained");
    }
    s
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
        AgentsCmd::Drain { id } => change(ctx, &api, &id, "drain").await?,
        AgentsCmd::Uncordon { id } => change(ctx, &api, &id, "uncordon").await?,
        AgentsCmd::Revoke { id } => change(ctx, &api, &id, "revoke").await?,
    }
    Ok(())
}

/// `agents drain|uncordon|revoke`: the change, then the agent as it is now.
async fn change(ctx: &Ctx, api: &flux_core::client::ApiClient, id: &str, verb: &str) -> CliResult {
    let agent: Agent = api
        .post(&format!("/v1/agents/{id}/{verb}"), &serde_json::json!({}))
        .await?;
    emit(ctx.out, &agent)?;
    Ok(())
}
