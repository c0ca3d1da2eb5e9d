//! Jobs as stored and submitted: the command to run, a job's life cycle, the submission body
//! and the queue entry that describes a job without loading it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Millis;
use crate::named::named_enum;
use crate::selector::Selector;

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

named_enum! {
    /// Life cycle of a job.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum JobStatus {
        Queued,
        Assigned,
        Running,
        Succeeded,
        Failed,
        Cancelled,
        TimedOut,
    }
}

impl JobStatus {
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled | JobStatus::TimedOut
        )
    }
}

named_enum! {
    /// Who made a job: a user through the API (the default, and what every job written before
    /// kinds existed reads as), the reconciler checking and repairing a desired state, or a
    /// schedule firing a slot (the job's `group` then names the schedule and slot).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum JobKind {
        #[default]
        User,
        Reconciler,
        /// A target's run (or verify) of a rollout (`crate::rollout`).
        Rollout,
        /// A slot's run of a schedule (`crate::schedule`).
        Schedule,
    }
}

/// A job as stored and as returned by the API.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub tenant: String,
    pub command: CommandSpec,
    /// Agent the job must run on; `None` means any online agent of the tenant.
    pub node_id: Option<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of the secret environment variables (their values are never shown or logged).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    pub workdir: Option<String>,
    pub timeout_secs: u64,
    pub max_attempts: u32,
    /// Higher runs first among a tenant's queued jobs (-100..=100, default 0).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Which agents may take the job (when it is not pinned by `node_id`), see
    /// [`crate::selector`]; a map selector of older records reads as its equalities.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// The fan-out this job belongs to (one job per matching agent).
    pub group: Option<String>,
    /// Who made the job (`user` unless the reconciler did).
    #[serde(default)]
    pub kind: JobKind,
    pub status: JobStatus,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    /// Number of attempts created so far.
    pub attempts: u32,
    pub current_attempt: Option<String>,
    /// Agent that holds (or last held) the job.
    pub agent: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub error: Option<String>,
    #[serde(default)]
    pub cancel_requested: bool,
    pub idempotency_key: Option<String>,
    /// Who submitted the job (token subject).
    pub submitted_by: String,
}

impl Job {
    /// A job queued at `now` and not tried yet: `command`, run within `timeout_secs` in at
    /// most `max_attempts` attempts, submitted by `submitted_by` as a user job that any agent
    /// of the tenant may take, with no environment. A submission sets the rest it asks for.
    pub fn queued(
        job_id: String,
        tenant: &str,
        command: CommandSpec,
        timeout_secs: u64,
        max_attempts: u32,
        submitted_by: &str,
        now: Millis,
    ) -> Job {
        Job {
            job_id,
            tenant: tenant.to_string(),
            command,
            node_id: None,
            env: BTreeMap::new(),
            secret_env: Vec::new(),
            workdir: None,
            timeout_secs,
            max_attempts,
            priority: 0,
            selector: Selector::default(),
            group: None,
            kind: JobKind::User,
            status: JobStatus::Queued,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            attempts: 0,
            current_attempt: None,
            agent: None,
            exit_code: None,
            signal: None,
            error: None,
            cancel_requested: false,
            idempotency_key: None,
            submitted_by: submitted_by.to_string(),
        }
    }
}

/// Body of `POST /v1/jobs` (and of the seed-compatible `POST /jobs`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitJob {
    /// Shell command line, run with `sh -c`.
    pub command: Option<String>,
    /// Program and arguments, run without a shell.
    pub argv: Option<Vec<String>>,
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: kept out of the job record, the API and
    /// the logs, and masked in the job's stored output (at least 4 bytes each).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    /// -100..=100; higher runs first among the tenant's queued jobs.
    pub priority: Option<i32>,
    /// Run on an agent this selector matches (one of them; every one with `fan_out`): an
    /// expression (`"role in (web,api),fact.cpus>=4"`) or a map of labels.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// One job per registered agent matching `selector`, each with its own result.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fan_out: bool,
    /// Queue a job pinned to a node id no agent has registered as yet (one about to enroll)
    /// instead of refusing it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unknown_node: bool,
    pub idempotency_key: Option<String>,
}

fn is_zero(v: &i32) -> bool {
    *v == 0
}

/// What a pending entry holds: enough to order the queue without loading every job.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    #[serde(default)]
    pub priority: i32,
    /// The agent the job is pinned to, so a queue full of jobs for a busy or absent agent is
    /// passed over without loading them.
    pub node_id: Option<String>,
    /// Which agents may take the job.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
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
