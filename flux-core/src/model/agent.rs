//! Agents: the stored record, its liveness state, the register and heartbeat bodies and
//! their reply, and label matching.
//!
//! An agent has two sets of labels: those it declares at registration (`labels`, replaced at
//! every registration) and those an admin sets (`admin_labels`, with `fluxctl agents label`, or
//! from its enrollment token), which a registration never changes. Selectors see both, the
//! admin label winning on a shared key ([`crate::selector`]). Its facts ([`Facts`]) are what
//! it reports of its machine, at registration and in a heartbeat when they change.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Facts, Millis, validate_facts};

use crate::named::named_enum;

named_enum! {
    /// Liveness state of an agent.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum AgentState {
        Online,
        Unreachable,
        Dead,
    }
}

/// A registered agent.
#[serde_with::skip_serializing_none]
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
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// The registration that holds the node: the agent process that registered last, while it
    /// is alive. Attempts are given to a registration, not just to a node id.
    pub registration: Option<Registration>,
    /// Labels set by an admin: kept apart from the declared `labels`, never changed by the
    /// agent, and winning over a declared label of the same key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub admin_labels: BTreeMap<String, String>,
    /// What the agent last reported of its machine.
    #[serde(default, skip_serializing_if = "Facts::is_empty")]
    pub facts: Facts,
    /// Drained (`fluxctl agents drain`): no new work is placed on it; what runs finishes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drained: bool,
    /// When its credentials were revoked (`fluxctl agents revoke`): it counts as dead until it
    /// registers again with a credential issued after that.
    pub revoked_at: Option<Millis>,
}

/// One registration of an agent: a public id, and the SHA-256 (hex) of the session secret
/// that only the registering agent received. The secret itself is never stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub secret_sha256: String,
}

impl Agent {
    /// Whether new work may be placed on it: online, not drained, not revoked.
    pub fn takes_work(&self) -> bool {
        self.state == AgentState::Online && !self.drained && self.revoked_at.is_none()
    }

    /// The record as the API shows it: the registration's id, not its secret's hash.
    pub fn public_view(mut self) -> Agent {
        if let Some(r) = &mut self.registration {
            r.secret_sha256.clear();
        }
        self
    }
}

/// Largest host name an agent may report (the DNS limit).
pub const MAX_HOSTNAME_BYTES: usize = 253;
/// Largest agent version string.
pub const MAX_VERSION_BYTES: usize = 64;
/// Most labels an agent may declare.
pub const MAX_LABELS: usize = 64;
/// Largest label value.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Most attempts an agent may report running (its slots are capped at 1024).
pub const MAX_RUNNING: usize = 1024;

/// Checks every field of a registration; the error names the field.
pub fn validate_register(req: &RegisterAgent) -> Result<(), String> {
    if req.slots.is_some_and(|s| s == 0 || s > 1024) {
        return Err("slots: must be between 1 and 1024".into());
    }
    if req.labels.len() > MAX_LABELS {
        return Err(format!(
            "labels: at most {MAX_LABELS} (got {})",
            req.labels.len()
        ));
    }
    for (k, v) in &req.labels {
        if !super::valid_ident(k) {
            return Err(format!(
                "labels: key {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ -",
                Abbrev(k)
            ));
        }
        if v.len() > MAX_LABEL_VALUE_BYTES || v.chars().any(char::is_control) {
            return Err(format!(
                "labels.{k}: value must be at most {MAX_LABEL_VALUE_BYTES} bytes without control characters"
            ));
        }
    }
    check_text("hostname", req.hostname.as_deref(), MAX_HOSTNAME_BYTES)?;
    check_text("version", req.version.as_deref(), MAX_VERSION_BYTES)?;
    if let Some(f) = &req.facts {
        validate_facts(f)?;
    }
    validate_running(&req.running)
}

/// Most admin labels an agent may carry.
pub const MAX_ADMIN_LABELS: usize = 64;

/// Checks a set of admin labels (after a change is applied); the error names the field.
pub fn validate_admin_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_ADMIN_LABELS {
        return Err(format!(
            "set: an agent carries at most {MAX_ADMIN_LABELS} admin labels (would be {})",
            labels.len()
        ));
    }
    for (k, v) in labels {
        check_label(k, v, "set")?;
    }
    Ok(())
}

/// One label's rules: a name selectors can address (not beginning with `fact.`, which names
/// facts), and a bounded value.
fn check_label(k: &str, v: &str, field: &str) -> Result<(), String> {
    if !super::valid_ident(k) || k.starts_with("fact.") {
        return Err(format!(
            "{field}: key {:?} must be 1 to 128 characters of A-Z a-z 0-9 . _ - not beginning \
             with \"fact.\"",
            Abbrev(k)
        ));
    }
    if v.len() > MAX_LABEL_VALUE_BYTES || v.chars().any(char::is_control) {
        return Err(format!(
            "{field}.{k}: value must be at most {MAX_LABEL_VALUE_BYTES} bytes without control characters"
        ));
    }
    Ok(())
}

/// Body of `POST /v1/agents/{id}/labels`: admin labels to set and to remove.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelAgent {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl LabelAgent {
    /// Applies the change to `labels` (removals first), checking the request and the result.
    pub fn apply(&self, labels: &mut BTreeMap<String, String>) -> Result<(), String> {
        if self.set.len() > MAX_ADMIN_LABELS || self.remove.len() > MAX_ADMIN_LABELS {
            return Err(format!(
                "set, remove: at most {MAX_ADMIN_LABELS} labels each"
            ));
        }
        for k in &self.remove {
            if !super::valid_ident(k) {
                return Err(format!("remove: {:?} is not a label name", Abbrev(k)));
            }
            if self.set.contains_key(k) {
                return Err(format!("remove: {k} is also in set"));
            }
            labels.remove(k);
        }
        for (k, v) in &self.set {
            check_label(k, v, "set")?;
            labels.insert(k.clone(), v.clone());
        }
        validate_admin_labels(labels)
    }
}

/// Checks the attempts an agent reports running; the error names the field.
pub fn validate_running(running: &[String]) -> Result<(), String> {
    if running.len() > MAX_RUNNING {
        return Err(format!(
            "running: an agent reports at most {MAX_RUNNING} running attempts"
        ));
    }
    if let Some((i, id)) = running
        .iter()
        .enumerate()
        .find(|(_, id)| !super::valid_attempt_id(id))
    {
        return Err(format!(
            "running[{i}]: {:?} is not an attempt id",
            Abbrev(id)
        ));
    }
    Ok(())
}

fn check_text(field: &str, v: Option<&str>, max: usize) -> Result<(), String> {
    match v {
        Some(s) if s.len() > max || s.chars().any(char::is_control) => Err(format!(
            "{field}: must be at most {max} bytes without control characters (got {} bytes)",
            s.len()
        )),
        _ => Ok(()),
    }
}

/// The start of a client-supplied string, for error messages (never the whole of a huge one).
struct Abbrev<'a>(&'a str);

impl std::fmt::Debug for Abbrev<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut end = self.0.len().min(40);
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        if end < self.0.len() {
            write!(f, "{:?}...", &self.0[..end])
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// Body of `POST /v1/agent/register`.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub slots: Option<u32>,
    pub hostname: Option<String>,
    pub version: Option<String>,
    /// Attempts the agent is still running (after a reconnect).
    #[serde(default)]
    pub running: Vec<String>,
    /// What the agent reports of its machine.
    pub facts: Option<Facts>,
}

/// Body of `POST /v1/agent/heartbeat`.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    #[serde(default)]
    pub running: Vec<String>,
    /// The agent's facts, sent only when they changed since it last sent them.
    pub facts: Option<Facts>,
}

/// Reply to register and heartbeat: attempts the agent must stop (they were reassigned or
/// cancelled while it was away).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReply {
    pub cancel: Vec<String>,
    pub heartbeat_interval_ms: u64,
    /// The session secret of a new registration, given once: the agent presents it (header
    /// `X-Flux-Session`) on every later call. Absent when a registration was resumed.
    pub session: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(req: &RegisterAgent) -> String {
        validate_register(req).unwrap_err()
    }

    #[test]
    fn every_register_field_is_bounded_and_named_in_the_error() {
        assert!(validate_register(&RegisterAgent::default()).is_ok());
        let ok = RegisterAgent {
            labels: [("role".to_string(), "web".to_string())].into(),
            slots: Some(8),
            hostname: Some("h".repeat(MAX_HOSTNAME_BYTES)),
            version: Some("v".repeat(MAX_VERSION_BYTES)),
            running: vec!["j-1.1".into()],
            facts: Some(Facts {
                cpus: Some(2),
                ..Facts::default()
            }),
        };
        assert!(validate_register(&ok).is_ok());
        let with = |f: &dyn Fn(&mut RegisterAgent)| {
            let mut r = ok.clone();
            f(&mut r);
            r
        };
        let e = named(&with(&|r| r.hostname = Some("h".repeat(900_000))));
        assert!(e.starts_with("hostname:"), "{e}");
        assert!(e.len() < 200, "the error echoes the field: {e}");
        let e = named(&with(&|r| r.version = Some("v".repeat(100_000))));
        assert!(e.starts_with("version:"), "{e}");
        let e = named(&with(&|r| r.hostname = Some("a\nb".into())));
        assert!(e.starts_with("hostname:"), "{e}");
        let e = named(&with(&|r| {
            r.labels = (0..=MAX_LABELS)
                .map(|i| (format!("k{i}"), "v".into()))
                .collect()
        }));
        assert!(e.starts_with("labels:"), "{e}");
        let e = named(&with(&|r| {
            r.labels.insert("k".repeat(129), "v".into());
        }));
        assert!(e.starts_with("labels: key"), "{e}");
        assert!(e.len() < 200, "{e}");
        let e = named(&with(&|r| {
            r.labels
                .insert("big".into(), "v".repeat(MAX_LABEL_VALUE_BYTES + 1));
        }));
        assert!(e.starts_with("labels.big:"), "{e}");
        let e = named(&with(&|r| {
            r.facts = Some(Facts {
                os: Some("x".repeat(100_000)),
                ..Facts::default()
            })
        }));
        assert!(e.starts_with("facts.os:") && e.len() < 200, "{e}");
        let e = named(&with(&|r| r.slots = Some(0)));
        assert!(e.starts_with("slots:"), "{e}");
        let e = named(&with(&|r| r.running = vec!["j-1.1".into(), "../x".into()]));
        assert!(e.starts_with("running[1]:"), "{e}");
        let e = named(&with(&|r| {
            r.running = vec!["j-1.1".into(); MAX_RUNNING + 1]
        }));
        assert!(e.starts_with("running:"), "{e}");
    }

    #[test]
    fn admin_label_changes_are_checked_and_name_the_field() {
        let mut l = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        let ch = LabelAgent {
            set: [("role".to_string(), "web".to_string())].into(),
            remove: vec!["zone".into()],
        };
        ch.apply(&mut l).unwrap();
        assert_eq!(l, BTreeMap::from([("role".to_string(), "web".to_string())]));
        for (bad, field) in [
            (
                LabelAgent {
                    set: [("fact.os".to_string(), "x".to_string())].into(),
                    ..LabelAgent::default()
                },
                "set: key",
            ),
            (
                LabelAgent {
                    set: [("k".to_string(), "v".repeat(MAX_LABEL_VALUE_BYTES + 1))].into(),
                    ..LabelAgent::default()
                },
                "set.k:",
            ),
            (
                LabelAgent {
                    remove: vec!["a b".into()],
                    ..LabelAgent::default()
                },
                "remove:",
            ),
            (
                LabelAgent {
                    set: (0..=MAX_ADMIN_LABELS)
                        .map(|i| (format!("k{i}"), "v".into()))
                        .collect(),
                    ..LabelAgent::default()
                },
                "set, remove:",
            ),
        ] {
            let mut l2 = l.clone();
            let e = bad.apply(&mut l2).unwrap_err();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn the_public_view_hides_the_secret_hash() {
        let a = Agent {
            node_id: "n".into(),
            tenant: "t".into(),
            labels: BTreeMap::new(),
            slots: 1,
            state: AgentState::Online,
            registered_at: 0,
            last_seen: 0,
            hostname: None,
            version: None,
            registration: Some(Registration {
                id: "r1".into(),
                secret_sha256: "ab".repeat(32),
            }),
            admin_labels: BTreeMap::new(),
            facts: Facts::default(),
            drained: false,
            revoked_at: None,
        };
        let v = serde_json::to_value(a.public_view()).unwrap();
        assert_eq!(v["registration"], serde_json::json!({"id": "r1"}));
    }
}
