//! Desired state: what a state is, how `state.toml` declares it, and the rules every state
//! must follow. The reconciler that converges agents towards it is in [`crate::reconcile`].
//!
//! ```toml
//! [[state]]
//! name = "motd"
//! targets = { labels = { role = "web" } }   # or { agents = ["agent-1"] },
//!                                           # or { selector = "role in (web,api),fact.cpus>=4" }
//! check = "grep -q fluxforge /etc/motd"
//! apply = "echo fluxforge >> /etc/motd"
//! interval = "30s"
//! timeout = "60s"
//! env = { GREETING = "hello" }              # optional
//! desired_exit_code = 0                     # optional: the check's exit code that means compliant
//! rollout = { max_concurrency = "20%", max_errors = 1 }   # optional: bounds the repairs
//! ```
//!
//! With a `rollout` table, at most `max_concurrency` of the state's targets (a count, or a
//! percentage of its targets rounded up) repair at once, and once more than `max_errors`
//! repairs failed over the state's current version its remediation halts until the state
//! changes or is resumed (`fluxctl state resume NAME`); see [`crate::reconcile`].
//!
//! The same rules apply to a file (errors name the file, line, column and field) and to JSON
//! bodies sent to the API (errors name the state and field).
//!
//! `file.rs` parses `state.toml` with positions for its errors; `plan.rs` decides, purely, what
//! an apply changes; `service.rs` stores states with CAS and carries out applies ([`States`]).

mod file;
mod plan;
mod service;

pub(crate) use file::Source;
pub use file::{StateFileError, parse_state_file};
#[cfg(test)]
pub(crate) use plan::actions;
pub(crate) use plan::plan_named;
pub use plan::{Plan, PlanAction, PlanConflict, PlanItem, plan};
pub use service::{ApplyRequest, PreparedApply, StateError, StateView, States};
pub(crate) use service::{dec, enc};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::jobs::{MAX_COMMAND_BYTES, MAX_TIMEOUT_SECS, validate_submit};
use crate::model::{Agent, Millis, SubmitJob, valid_ident};
use crate::rollout::{Limit, LimitSpec, parse_limits};
use crate::selector::Selector;

/// Default check interval.
pub const DEFAULT_INTERVAL_SECS: u64 = 30;
/// Default timeout of each check and apply run.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Longest check interval accepted (one day).
pub const MAX_INTERVAL_SECS: u64 = 24 * 3600;
/// Most states one apply may declare, and most agents one state may name.
pub const MAX_STATES: usize = 1000;

/// Which agents a state applies to: named agents, or every registered agent a selector
/// matches ([`crate::selector`]). Exactly one of the two is given. The selector is written
/// `labels = { role = "web" }` (the map form: equalities) or `selector = "role in (web,api)"`
/// (`labels` also takes an expression and `selector` a map: they are one field).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Targets {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    #[serde(
        default,
        alias = "selector",
        skip_serializing_if = "Selector::is_empty"
    )]
    pub labels: Selector,
}

impl Targets {
    /// Whether this agent is a target.
    pub fn matches(&self, agent: &Agent) -> bool {
        if !self.agents.is_empty() {
            return self.agents.contains(&agent.node_id);
        }
        !self.labels.is_empty() && self.labels.matches(agent)
    }

    pub fn display(&self) -> String {
        if !self.agents.is_empty() {
            format!("agents {}", self.agents.join(","))
        } else if self.labels.as_map().is_some() {
            format!("labels {}", self.labels)
        } else {
            format!("selector {}", self.labels)
        }
    }
}

/// One desired state, as sent to and returned by the API.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSpec {
    pub name: String,
    pub targets: Targets,
    /// Exits with `desired_exit_code` when the target is compliant.
    pub check: String,
    /// Brings the target into compliance.
    pub apply: String,
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub desired_exit_code: i32,
    /// Bounds on the state's repairs; none: every drifted target repairs at once, without end.
    pub rollout: Option<StateRollout>,
}

/// A state's rollout: how many of its targets repair (run `apply`, then the verifying check)
/// at once, and how many failed repairs over the state's current version halt its remediation.
/// The limits are read as an ad-hoc rollout's are ([`crate::rollout::parse_limits`]: absent, a
/// concurrency of 1 and no failure allowed).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateRollout {
    pub max_concurrency: Option<LimitSpec>,
    pub max_errors: Option<LimitSpec>,
}

impl StateRollout {
    /// The concurrency and error limits, or the field (`rollout.max_concurrency`,
    /// `rollout.max_errors`) that breaks a rule.
    pub fn limits(&self) -> Result<(Limit, Limit), FieldError> {
        parse_limits(self.max_concurrency.as_ref(), self.max_errors.as_ref()).map_err(|(f, m)| {
            let field = if f == "max_errors" {
                "rollout.max_errors"
            } else {
                "rollout.max_concurrency"
            };
            FieldError::new(field, m)
        })
    }

    /// As `diff` and `get` show it: `max_concurrency=20% max_errors=1` (defaults filled in).
    pub fn display(&self) -> String {
        match self.limits() {
            Ok((c, e)) => format!("max_concurrency={c} max_errors={e}"),
            Err(_) => format!("{self:?}"),
        }
    }
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECS
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

/// A state as stored: the spec plus who changed it and when. Its version is the store's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredState {
    pub spec: StateSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub updated_by: String,
}

/// A rule a state breaks: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl FieldError {
    fn new(field: &'static str, message: impl Into<String>) -> FieldError {
        FieldError {
            field,
            message: message.into(),
        }
    }
}

/// Checks a state against every rule. The first broken rule is returned.
pub fn validate_spec(s: &StateSpec) -> Result<(), FieldError> {
    if !valid_ident(&s.name) {
        return Err(FieldError::new(
            "name",
            "must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
        ));
    }
    let t = &s.targets;
    match (t.agents.is_empty(), t.labels.is_empty()) {
        (true, true) => {
            return Err(FieldError::new(
                "targets",
                "name agents (targets = { agents = [\"agent-1\"] }) or a selector (targets = { labels = { role = \"web\" } } or targets = { selector = \"role in (web,api)\" })",
            ));
        }
        (false, false) => {
            return Err(FieldError::new(
                "targets",
                "give either agents or a selector (labels), not both",
            ));
        }
        _ => {}
    }
    if t.agents.len() > MAX_STATES {
        return Err(FieldError::new(
            "targets",
            format!("at most {MAX_STATES} agents"),
        ));
    }
    let mut seen = BTreeSet::new();
    for a in &t.agents {
        if !valid_ident(a) {
            return Err(FieldError::new(
                "targets",
                "agent ids must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
            ));
        }
        if !seen.insert(a) {
            return Err(FieldError::new(
                "targets",
                format!("agent {a} is listed twice"),
            ));
        }
    }
    // The selector is bounded and valid by construction (parsed when the spec is read).
    for (field, cmd) in [("check", &s.check), ("apply", &s.apply)] {
        if cmd.trim().is_empty() {
            return Err(FieldError::new(field, "must not be empty"));
        }
        if cmd.len() > MAX_COMMAND_BYTES || cmd.contains('\0') {
            return Err(FieldError::new(
                field,
                format!("must be at most {MAX_COMMAND_BYTES} bytes without NUL"),
            ));
        }
    }
    if !(1..=MAX_INTERVAL_SECS).contains(&s.interval_secs) {
        return Err(FieldError::new(
            "interval",
            format!("must be between 1s and {}h", MAX_INTERVAL_SECS / 3600),
        ));
    }
    if !(1..=MAX_TIMEOUT_SECS).contains(&s.timeout_secs) {
        return Err(FieldError::new(
            "timeout",
            format!("must be between 1s and {}d", MAX_TIMEOUT_SECS / 86400),
        ));
    }
    if !(0..=255).contains(&s.desired_exit_code) {
        return Err(FieldError::new(
            "desired_exit_code",
            "must be between 0 and 255",
        ));
    }
    if let Some(r) = &s.rollout {
        r.limits()?;
    }
    // The environment follows the same rules as a job's.
    let probe = SubmitJob {
        command: Some("true".into()),
        env: s.env.clone(),
        ..SubmitJob::default()
    };
    if let Err(e) = validate_submit(&probe) {
        let m = e.to_string();
        return Err(FieldError::new(
            "env",
            m.strip_prefix("env: ").unwrap_or(&m).to_string(),
        ));
    }
    Ok(())
}

/// Checks a whole set of states: each one, plus unique names and the count limit.
pub fn validate_set(states: &[StateSpec]) -> Result<(), String> {
    if states.len() > MAX_STATES {
        return Err(format!("at most {MAX_STATES} states in one apply"));
    }
    let mut names = BTreeSet::new();
    for s in states {
        validate_spec(s)
            .map_err(|e| format!("state {}: {}: {}", shown(&s.name), e.field, e.message))?;
        if !names.insert(&s.name) {
            return Err(format!("state {:?} is declared twice", s.name));
        }
    }
    Ok(())
}

/// A state name as errors show it: quoted, and cut short when it is too long to be valid (an
/// error never echoes an unbounded value).
pub fn shown(name: &str) -> String {
    if name.len() <= 128 {
        return format!("{name:?}");
    }
    let mut cut = 64;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{:?}… ({} bytes)", &name[..cut], name.len())
}

/// Renders a duration in seconds the way state files write it.
pub fn format_secs(s: u64) -> String {
    match s {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// One field that differs between two versions of a state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: String,
    pub from: String,
    pub to: String,
}

impl FieldChange {
    /// The changes among `(field, from, to)` triples: those whose two sides differ, in order.
    pub(crate) fn changed(
        pairs: impl IntoIterator<Item = (&'static str, String, String)>,
    ) -> Vec<FieldChange> {
        pairs
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(f, from, to)| FieldChange {
                field: f.to_string(),
                from,
                to,
            })
            .collect()
    }
}

/// The fields that differ from `old` to `new`, in file order.
pub fn diff_specs(old: &StateSpec, new: &StateSpec) -> Vec<FieldChange> {
    let rollout =
        |r: &Option<StateRollout>| r.as_ref().map_or("none".to_string(), StateRollout::display);
    let env = |e: &BTreeMap<String, String>| {
        e.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let pairs = [
        ("targets", old.targets.display(), new.targets.display()),
        ("check", old.check.clone(), new.check.clone()),
        ("apply", old.apply.clone(), new.apply.clone()),
        (
            "interval",
            format_secs(old.interval_secs),
            format_secs(new.interval_secs),
        ),
        (
            "timeout",
            format_secs(old.timeout_secs),
            format_secs(new.timeout_secs),
        ),
        ("env", env(&old.env), env(&new.env)),
        (
            "desired_exit_code",
            old.desired_exit_code.to_string(),
            new.desired_exit_code.to_string(),
        ),
        ("rollout", rollout(&old.rollout), rollout(&new.rollout)),
    ];
    FieldChange::changed(pairs)
}

/// The agents a state targets, in id order: the named ones (registered or not), or the
/// registered agents its selector matches.
pub fn target_ids(spec: &StateSpec, agents: &[Agent]) -> Vec<String> {
    if !spec.targets.agents.is_empty() {
        let mut v = spec.targets.agents.clone();
        v.sort();
        return v;
    }
    let mut v: Vec<String> = agents
        .iter()
        .filter(|a| spec.targets.matches(a))
        .map(|a| a.node_id.clone())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, labels: &[(&str, &str)]) -> Agent {
        serde_json::from_value(serde_json::json!({
            "node_id": id, "tenant": "t", "slots": 1, "state": "online",
            "registered_at": 0, "last_seen": 0,
            "labels": labels.iter().map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        }))
        .unwrap()
    }

    #[test]
    fn label_selectors_match_supersets_only() {
        let t = Targets {
            agents: vec![],
            labels: Selector::labels([("role", "web")]),
        };
        let web = agent("a", &[("role", "web"), ("dc", "eu")]);
        let db = agent("a", &[("role", "db")]);
        assert!(t.matches(&web));
        assert!(!t.matches(&db));
        assert!(!t.matches(&agent("a", &[])));
        let named = Targets {
            agents: vec!["a".into()],
            labels: Selector::default(),
        };
        assert!(named.matches(&db) && !named.matches(&agent("b", &[("role", "web")])));
    }

    #[test]
    fn targets_take_the_map_form_or_an_expression_under_either_name() {
        let parse = |toml_src: &str| toml::from_str::<Targets>(toml_src);
        let map = parse("labels = { role = \"web\" }").unwrap();
        assert_eq!(map.labels, Selector::parse("role=web").unwrap());
        let expr = parse("selector = \"role in (web,api),fact.cpus>=4\"").unwrap();
        assert_eq!(
            expr.labels,
            Selector::parse("role in (web,api),fact.cpus>=4").unwrap()
        );
        let e = parse("selector = \"role in (web\"").unwrap_err();
        assert!(e.to_string().contains("at byte 12"), "{e}");
        // JSON replies keep the map form for map selectors.
        assert_eq!(
            serde_json::to_value(&map).unwrap(),
            serde_json::json!({"labels": {"role": "web"}})
        );
        assert!(expr.display().starts_with("selector role in (web,api)"));
    }
}
