//! Agents: the stored record, its liveness state, the register and heartbeat bodies and
//! their reply, and label matching.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Millis;

/// Liveness state of an agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    Online,
    Unreachable,
    Dead,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Online => "online",
            AgentState::Unreachable => "unreachable",
            AgentState::Dead => "dead",
        }
    }
}

/// A registered agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub node_id: String,
    pub tenant: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub slots: u32,
    pub state: AgentState,
    pub registered_at: Millis,
    pub last_seen: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// Body of `POST /v1/agent/register`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slots: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Attempts the agent is still running (after a reconnect).
    #[serde(default)]
    pub running: Vec<String>,
}

/// Body of `POST /v1/agent/heartbeat`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default)]
    pub running: Vec<String>,
}

/// Reply to register and heartbeat: attempts the agent must stop (they were reassigned or
/// cancelled while it was away).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub cancel: Vec<String>,
    pub heartbeat_interval_ms: u64,
}

/// Whether `labels` carry every label of `selector` (an empty selector matches anything).
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}
