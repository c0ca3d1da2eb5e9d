//! Attempts at running a job: their state and result, the task an agent receives, and the
//! output chunks it streams. Attempt ids are `<job_id>.<number>`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{CommandSpec, Millis};

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

/// Attempt ids are `<job_id>.<number>`, so the job is known from the attempt id alone.
pub fn attempt_id(job_id: &str, number: u32) -> String {
    format!("{job_id}.{number}")
}

/// Splits an attempt id into job id and number.
pub fn parse_attempt_id(attempt_id: &str) -> Option<(&str, u32)> {
    let (job, n) = attempt_id.rsplit_once('.')?;
    Some((job, n.parse().ok()?))
}
