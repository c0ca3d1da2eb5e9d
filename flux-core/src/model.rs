//! The objects FluxForge stores: jobs, attempts, agents and the task envelopes agents receive.
//!
//! Every object is stored as JSON under a tenant-scoped key (see [`crate::keys`]). Request types reject
//! unknown fields, so a client can never set a field it does not own (no mass assignment).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// Current wall-clock time in milliseconds.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// What to run: a shell command line (`sh -c`) or an argv vector (no shell).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandSpec {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandSpec {
    /// A one-line rendering for tables and logs.
    pub fn display(&self) -> String {
        match self {
            CommandSpec::Shell(s) => s.clone(),
            CommandSpec::Argv(v) => v.join(" "),
        }
    }
}

/// Life cycle of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Assigned,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled | JobStatus::TimedOut
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Assigned => "assigned",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::TimedOut => "timed_out",
        }
    }

    pub fn parse(s: &str) -> Option<JobStatus> {
        [
            JobStatus::Queued,
            JobStatus::Assigned,
            JobStatus::Running,
            JobStatus::Succeeded,
            JobStatus::Failed,
            JobStatus::Cancelled,
            JobStatus::TimedOut,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// A job as stored and as returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub tenant: String,
    pub command: CommandSpec,
    /// Agent the job must run on; `None` means any online agent of the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the secret environment variables (their values are never shown or logged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    /// Higher runs first among a tenant's queued jobs (-100..=100, default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Labels the agent must carry (when the job is not pinned by `node_id`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// The fan-out this job belongs to (one job per matching agent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    pub status: JobStatus,
    pub created_at: Millis,
    pub updated_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    /// Number of attempts created so far.
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_attempt: Option<String>,
    /// Agent that holds (or last held) the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Who submitted the job (token subject).
    pub submitted_by: String,
}

/// Body of `POST /v1/jobs` (and of the seed-compatible `POST /jobs`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// Shell command line, run with `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Program and arguments, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argv: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: kept out of the job record, the API and
    /// the logs, and masked in the job's stored output (at least 4 bytes each).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// -100..=100; higher runs first among the tenant's queued jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Run on an agent carrying all these labels (one of them; every one with `fan_out`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
    /// One job per registered agent matching `selector`, each with its own result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fan_out: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// What a pending entry holds: enough to order the queue without loading every job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(default)]
    pub priority: i32,
    /// The agent the job is pinned to, so a queue full of jobs for a busy or absent agent is
    /// passed over without loading them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// The labels the agent must carry.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

impl Pending {
    pub fn of(job: &Job) -> Pending {
        Pending {
            priority: job.priority,
            node_id: job.node_id.clone(),
            selector: job.selector.clone(),
        }
    }
}

/// State of one attempt at running a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptState {
    /// Written to the agent's inbox, not yet started.
    Assigned,
    Running,
    Finished,
    /// Taken away from its agent (agent dead or never started it); a later attempt may exist.
    Abandoned,
}

/// How an attempt ended, as reported by the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptResult {
    /// `exited`, `signaled`, `timed_out`, `cancelled` or `failed_to_start`.
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Exited,
    Signaled,
    TimedOut,
    Cancelled,
    FailedToStart,
}

/// One attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub attempt_id: String,
    pub job_id: String,
    pub number: u32,
    pub agent: String,
    pub state: AttemptState,
    pub assigned_at: Millis,
    /// If still `Assigned` at this time, the attempt is taken back and requeued.
    pub start_deadline: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<AttemptResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abandoned_reason: Option<String>,
    /// Output bytes stored (at most the cap).
    #[serde(default)]
    pub output_bytes: u64,
    /// Output bytes received but not stored because of the cap.
    #[serde(default)]
    pub output_dropped: u64,
    /// Next output chunk sequence number expected.
    #[serde(default)]
    pub output_seq: u64,
}

/// What an agent receives from its inbox: a task to run, or a request to cancel one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub attempt_id: String,
    pub job_id: String,
    pub command: CommandSpec,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret variables: set in the environment like `env`, and masked in the output.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    pub timeout_secs: u64,
    #[serde(default)]
    pub cancel: bool,
    /// Store revision of this inbox entry; agents poll with `after=` the highest seen.
    #[serde(default)]
    pub revision: u64,
}

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

/// Which output stream a chunk came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Body of `POST /v1/agent/attempts/{id}/output`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputChunk {
    /// Sequence number of this chunk within the attempt, from 0, without gaps.
    pub seq: u64,
    pub stream: Stream,
    /// Chunk bytes as (lossy) UTF-8 text.
    pub data: String,
}

/// A stored chunk of output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredChunk {
    pub seq: u64,
    pub stream: Stream,
    pub data: String,
}

// Old paths, kept for the other crates until they move (layout).
pub use crate::keys;

/// Attempt ids are `<job_id>.<number>`, so the job is known from the attempt id alone.
pub fn attempt_id(job_id: &str, number: u32) -> String {
    format!("{job_id}.{number}")
}

/// Splits an attempt id into job id and number.
pub fn parse_attempt_id(attempt_id: &str) -> Option<(&str, u32)> {
    let (job, n) = attempt_id.rsplit_once('.')?;
    Some((job, n.parse().ok()?))
}

/// Whether `labels` carry every label of `selector` (an empty selector matches anything).
pub fn labels_match(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Checks an identifier chosen by a client (node id, idempotency key): 1..=128 characters of
/// `[A-Za-z0-9._-]`.
pub fn valid_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_round_trip() {
        let id = attempt_id("j-0192abc", 3);
        assert_eq!(parse_attempt_id(&id), Some(("j-0192abc", 3)));
        assert_eq!(parse_attempt_id("nodot"), None);
        assert_eq!(parse_attempt_id("j.x"), None);
    }

    #[test]
    fn submit_rejects_unknown_fields() {
        let ok: Result<SubmitJob, _> =
            serde_json::from_str(r#"{"command":"echo hi","node_id":"agent-1"}"#);
        assert!(ok.is_ok());
        let bad: Result<SubmitJob, _> =
            serde_json::from_str(r#"{"command":"echo hi","tenant":"other"}"#);
        assert!(
            bad.unwrap_err()
                .to_string()
                .contains("unknown field `tenant`")
        );
    }

    #[test]
    fn identifiers_are_restricted() {
        assert!(valid_ident("agent-1"));
        assert!(valid_ident("web.eu_1"));
        assert!(!valid_ident(""));
        assert!(!valid_ident("a/b"));
        assert!(!valid_ident("a b"));
        assert!(!valid_ident(&"x".repeat(129)));
    }

    #[test]
    fn terminal_statuses() {
        assert!(JobStatus::Succeeded.is_terminal());
        assert!(JobStatus::TimedOut.is_terminal());
        assert!(!JobStatus::Running.is_terminal());
        assert_eq!(JobStatus::parse("timed_out"), Some(JobStatus::TimedOut));
        assert_eq!(JobStatus::parse("nope"), None);
    }
}

/// Parses a duration such as `500ms`, `15s`, `2m`, `1h` or `1d` (a bare number is seconds).
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (examples: 500ms, 15s, 2m, 1h)"))?;
    let ms = match unit.trim() {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use ms, s, m, h or d)"
            ));
        }
    };
    ms.map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

#[cfg(test)]
mod duration_tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }
}
