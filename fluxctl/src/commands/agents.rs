//! `fluxctl agents list|get|label`: the tenant's agents with their state, slots, labels, admin
//! labels and facts; `list -l EXPR` previews which agents a selector matches; `label` sets and
//! removes admin labels.

use std::collections::BTreeMap;

use clap::Subcommand;
use flux_core::model::{Agent, LabelAgent};

use crate::cli::parse_kv;
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, age, emit, table};

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// List agents of the tenant (`-o wide`: admin labels and the main facts too).
    List {
        /// Only the agents this selector matches, e.g. 'role in (web,api),fact.cpus>=4'
        /// (repeatable: all must hold). Previews what a job or state with it would target.
        #[arg(long = "selector", short = 'l', value_name = "EXPR")]
        selector: Vec<String>,
    },
    /// Show one agent: labels, admin labels and facts.
    Get { id: String },
    /// Stop new work reaching an agent; what it runs finishes.
    Drain { id: String },
    /// Let new work reach a drained agent again.
    Uncordon { id: String },
    /// End every credential of an agent issued before now: it is refused from its next call
    /// and its attempts are requeued as for a dead agent. It can enroll again later.
    Revoke { id: String },
    /// Set admin labels (KEY=VALUE) and remove them (--remove KEY): admins only. They are
    /// kept apart from the labels the agent declares, survive its re-registrations, and win
    /// over a declared label of the same key.
    Label {
        id: String,
        #[arg(value_parser = parse_kv, value_name = "KEY=VALUE")]
        labels: Vec<(String, String)>,
        /// Admin label to remove (repeatable).
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
    },
}

fn pairs(m: &BTreeMap<String, String>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl Render for [Agent] {
    fn render(&self) -> String {
        let mut t = table(&["AGENT", "STATE", "SLOTS", "LABELS", "LAST SEEN", "VERSION"]);
        for a in self {
            t.add_row(vec![
                a.node_id.clone(),
                state_text(a),
                a.slots.to_string(),
                pairs(&a.labels),
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

    fn render_wide(&self) -> String {
        let mut t = table(&[
            "AGENT",
            "STATE",
            "SLOTS",
            "LABELS",
            "ADMIN LABELS",
            "OS",
            "ARCH",
            "CPUS",
            "MEMORY MB",
            "ROOT FREE GB",
            "LAST SEEN",
            "VERSION",
        ]);
        for a in self {
            let f = &a.facts;
            let os = match (&f.distribution, &f.distribution_version) {
                (Some(d), Some(v)) => format!("{d} {v}"),
                (Some(d), None) => d.clone(),
                _ => f.os.clone().unwrap_or_default(),
            };
            let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
            t.add_row(vec![
                a.node_id.clone(),
                a.state.as_str().to_string(),
                a.slots.to_string(),
                pairs(&a.labels),
                pairs(&a.admin_labels),
                os,
                f.arch.clone().unwrap_or_default(),
                num(f.cpus),
                num(f.memory_mb),
                num(f.root_free_gb),
                format!("{} ago", age(a.last_seen)),
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

/// One agent: its record, then its labels, admin labels and facts, one per line.
impl Render for Agent {
    fn render(&self) -> String {
        let mut out = std::slice::from_ref(self).render();
        out.push_str(&format!("labels:        {}\n", pairs(&self.labels)));
        out.push_str(&format!("admin labels:  {}\n", pairs(&self.admin_labels)));
        if self.facts.is_empty() {
            out.push_str("facts:         (none reported)\n");
        } else {
            out.push_str("facts:\n");
            for (name, value) in self.facts.shown() {
                out.push_str(&format!("  fact.{name:<22} {value}\n"));
            }
        }
        out
    }
}

pub async fn run(ctx: &Ctx, cmd: AgentsCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        AgentsCmd::List { selector } => {
            let path = if selector.is_empty() {
                "/v1/agents".to_string()
            } else {
                format!(
                    "/v1/agents?selector={}",
                    super::job::urlencoding(&selector.join(","))
                )
            };
            let agents: Vec<Agent> = api.get(&path).await?;
            emit(ctx.out, agents.as_slice())?;
        }
        AgentsCmd::Label { id, labels, remove } => {
            let change = LabelAgent {
                set: labels.into_iter().collect(),
                remove,
            };
            let agent: Agent = api
                .post(
                    &format!("/v1/agents/{}/labels", super::job::urlencoding(&id)),
                    &change,
                )
                .await?;
            emit(ctx.out, &agent)?;
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
