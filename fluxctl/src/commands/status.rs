//! `fluxctl status`: the answering node, the leader and its epoch, the store, agents by state,
//! and a table of the live fluxd nodes.

use flux_core::replies::StatusReply;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, SortedKeys, age, emit, json_text, table};

impl Render for StatusReply {
    fn render(&self) -> String {
        let agents = Some(
            self.agents
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" "),
        )
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "none".into());
        let mut text = format!(
            "leader: {} (epoch {})   store: {} (epoch {})   agents: {}   queued: {}\n",
            self.leader_node.as_deref().unwrap_or("none"),
            json_text(&self.leader_epoch),
            self.store,
            self.store_epoch,
            agents,
            self.queue_depth
        );
        let mut t = table(&["NODE", "LEADER", "EPOCH", "LAST SEEN", "VERSION"]);
        for n in &self.nodes {
            t.add_row(vec![
                if n.node_id == self.node_id {
                    format!("{} (answered)", n.node_id)
                } else {
                    n.node_id.clone()
                },
                if n.leader { "yes".into() } else { "no".into() },
                n.epoch.to_string(),
                format!("{} ago", age(n.last_seen)),
                n.version.clone(),
            ]);
        }
        text.push_str(&format!("{t}\n"));
        text
    }
}

pub async fn run(ctx: &Ctx) -> CliResult {
    let status: StatusReply = ctx.client()?.get("/v1/status").await?;
    emit(ctx.out, &SortedKeys(&status))?;
    Ok(())
}
