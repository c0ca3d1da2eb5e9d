//! Wire replies that `fluxd` sends and `fluxctl` reads, typed once here so the two sides cannot
//! drift apart and the CLI reads fields by name instead of indexing untyped JSON.
//!
//! Each struct mirrors what `fluxd` serializes today, field for field. Replies that `fluxd`
//! builds with `serde_json::json!` come out with their keys sorted (serde_json keeps object keys
//! in a sorted map), so those structs declare their fields in alphabetical order: serializing one
//! gives the same bytes as the `json!` reply. Replies that `fluxd` serializes from a struct keep
//! that struct's field order.
//!
//! Job, agent, attempt and state views are already typed elsewhere ([`crate::model`],
//! [`crate::state::StateView`]) and are not repeated here.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::auth::Claims;
pub use crate::backup::RestoreReport;
use crate::model::Job;
use crate::quota::Quota;

/// `GET /v1/status`: the answering node, the lease holder, the live nodes and the tenant's
/// agents by state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReply {
    /// Agents of the caller's tenant by state (`online`, `offline`, ...).
    pub agents: BTreeMap<String, usize>,
    /// The answering node's own leadership epoch.
    pub epoch: u64,
    /// Whether the answering node holds the leader lease.
    pub leader: bool,
    /// Epoch of the current lease holder (none when nobody holds the lease).
    pub leader_epoch: Option<u64>,
    /// Node id of the current lease holder.
    pub leader_node: Option<String>,
    /// The node that answered.
    pub node_id: String,
    /// Nodes that refreshed their record recently, by node id.
    pub nodes: Vec<NodeRecord>,
    /// Jobs of the caller's tenant waiting for an agent.
    pub queue_depth: usize,
    /// Store backend (`redb` or `redis`).
    pub store: String,
    /// The store's current fencing epoch.
    pub store_epoch: u64,
    /// fluxd version of the answering node.
    pub version: String,
}

/// What a node records about itself in the store, so every node can show the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub version: String,
    pub started_at: u64,
    pub last_seen: u64,
    pub leader: bool,
    pub epoch: u64,
}

/// `POST /v1/tokens`: the new token and its claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenReply {
    pub token: String,
    pub claims: Claims,
}

/// `POST /v1/tokens/revoke`: the id (jti) of the revoked token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeReply {
    pub revoked: String,
}

/// One row of `GET /v1/tenants`: a tenant's usage and quota.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantUsage {
    pub tenant: String,
    /// Jobs waiting for an agent.
    pub queued: usize,
    /// Attempts assigned to or running on agents.
    pub running: usize,
    pub agents_online: usize,
    pub agents: usize,
    pub states: usize,
    pub quota: Quota,
}

/// `POST /v1/tenants`: the new tenant and a first admin token for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantCreated {
    pub admin_token: String,
    pub claims: Claims,
    pub tenant: String,
}

/// `GET` and `PUT /v1/tenants/{tenant}/quota`: a tenant's quota with its version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuotaView {
    pub tenant: String,
    /// 0 when never set.
    pub version: u64,
    pub quota: Quota,
}

/// `DELETE /v1/states/{name}`: the deleted state and the version it had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDeleted {
    pub deleted: String,
    pub version: u64,
}

/// `POST /v1/jobs` with `fan_out`: the group id and one job per matching agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FanOutReply {
    pub group: String,
    pub jobs: Vec<Job>,
}

/// A note line in a job's JSON-lines log stream (`{"note": "..."}`), between output chunks:
/// a new attempt started, the job ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogNote {
    pub note: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The structs built from `json!` replies serialize with the keys `json!` gives.
    #[test]
    fn json_built_replies_keep_their_key_order() {
        let status = StatusReply {
            agents: BTreeMap::from([("online".to_string(), 2)]),
            epoch: 3,
            leader: true,
            leader_epoch: Some(3),
            leader_node: Some("n1".into()),
            node_id: "n1".into(),
            nodes: vec![],
            queue_depth: 0,
            store: "redb".into(),
            store_epoch: 3,
            version: "0.1.0".into(),
        };
        let typed = serde_json::to_string(&status).unwrap();
        let untyped = serde_json::to_value(&status).unwrap().to_string();
        assert_eq!(typed, untyped);
        let deleted = StateDeleted {
            deleted: "web".into(),
            version: 4,
        };
        assert_eq!(
            serde_json::to_string(&deleted).unwrap(),
            serde_json::json!({"deleted": "web", "version": 4}).to_string()
        );
    }
}
