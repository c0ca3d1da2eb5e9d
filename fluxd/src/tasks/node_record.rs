//! This node's record in the store (`_system/nodes/<node>`), refreshed every [`NODE_REFRESH`]
//! and on leadership changes, so that every node can show the cluster (`/v1/status`).

use std::sync::Arc;
use std::time::Duration;

use flux_core::keys;
use flux_core::model::now_ms;
use flux_core::replies::NodeRecord;
use flux_core::store::{Expect, Key, SYSTEM_TENANT, StoreError};
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// How often a node refreshes its record; a record older than three periods is shown as gone.
pub const NODE_REFRESH: Duration = Duration::from_secs(2);

fn node_key(node: &str) -> Result<Key, StoreError> {
    Key::new(SYSTEM_TENANT, keys::node(node))
}

/// Writes this node's record every [`NODE_REFRESH`] until `cancel`, then removes it.
pub async fn run_node_record(st: Arc<AppState>, cancel: CancellationToken) {
    let started_at = now_ms();
    let Ok(key) = node_key(&st.node_id) else {
        tracing::warn!(node = %st.node_id, "node id cannot be recorded in the store");
        return;
    };
    loop {
        let l = st.leader.snapshot();
        let rec = NodeRecord {
            node_id: st.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            last_seen: now_ms(),
            leader: l.is_leader,
            epoch: l.epoch,
        };
        let body = serde_json::to_vec(&rec).expect("node record serialises");
        if let Err(e) = st.store.put(key.clone(), body, Expect::Any).await {
            tracing::debug!(error = %e, "node record not written");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(NODE_REFRESH) => {}
            _ = st.node_changed().notified() => {}
        }
    }
    let _ = st.store.delete(key, Expect::Any).await;
}

/// Nodes whose records are fresh.
pub async fn live_nodes(st: &AppState) -> Result<Vec<NodeRecord>, StoreError> {
    let horizon = now_ms().saturating_sub(3 * NODE_REFRESH.as_millis() as u64);
    let mut out: Vec<NodeRecord> = st
        .store
        .list(SYSTEM_TENANT, keys::NODES)
        .await?
        .into_iter()
        .filter_map(|e| serde_json::from_slice::<NodeRecord>(&e.value).ok())
        .filter(|n| n.last_seen >= horizon)
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(out)
}
