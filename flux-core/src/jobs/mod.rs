//! Jobs: submission, assignment to agents, the agent protocol (start, output, result), cancel,
//! and the leader's sweeps that requeue attempts whose agent is gone.
//!
//! State transitions that touch several objects are one store transaction with CAS on every
//! object involved, so two nodes racing on the same job cannot both win. Leader-only writes
//! (assignment, requeue, liveness) carry the leader's fencing epoch.
//!
//! Guarantees:
//! - at-least-once: an attempt that is assigned but not started by its deadline, or whose agent
//!   is declared dead, is abandoned and the job requeued (up to `max_attempts`);
//! - a result is recorded once per attempt: a repeated report is accepted and changes nothing;
//! - a report for an attempt that was taken away is not recorded on the job.
//!
//! The service is one [`Jobs`] handle whose methods are spread over one file per concern:
//! - `submit`: validation, submission (single, idempotent, fan-out) and cancel;
//! - `query`: reads of jobs, attempts, output, agents and queue depth;
//! - [`placement`]: the pure placement policy (queue order, free slots, choice of agent);
//! - [`inbox_memory`]: what a node knows of agents' inboxes from the change notices, so that
//!   a task poll that can find nothing new does not read its inbox;
//! - [`index`]: the scheduler's in-memory view of agents, inbox counts and the queue, fed by
//!   the store's change notices;
//! - `schedule`: the leader's scheduling driver (refresh the view, plan, one batch of fenced
//!   commits);
//! - `liveness`: the leader's sweeps, agent liveness and requeue;
//! - `protocol`: the agent protocol (register, heartbeat, poll, start, output, finish).

mod admin;
pub mod inbox_memory;
pub mod index;
mod labels;
pub mod listing;
mod liveness;
pub mod placement;
mod protocol;
mod query;
mod schedule;
mod submit;
pub mod sweep_memo;

pub use admin::{AgentChange, apply_change};
pub use inbox_memory::InboxMemory;
pub use listing::{IndexBackfill, JobFilter, Page, index_changes, index_keys};
pub use liveness::{Admission, SeenRecord, SweepReport, admit_registration, judge};
pub use protocol::{AgentCaller, Recorded};
pub use schedule::ScheduleReport;
pub use submit::validate_submit;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys;
use crate::model::{Job, JobStatus, Millis};
use crate::store::{DynStore, Expect, Key, StoreError, Txn, Version};

/// Errors of the job service.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The attempt was taken away from this agent (reassigned, cancelled or finished).
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    /// The caller does not hold the node's current registration (no or a stale session), or
    /// registers while another live registration holds the node.
    #[error("{0}")]
    Session(String),
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(StoreError),
}

crate::error::from_store_error!(JobError);

pub type Result<T, E = JobError> = std::result::Result<T, E>;

/// Tunables of the job service.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// Output bytes stored per attempt; the rest is counted and dropped, with a marker.
    pub output_cap_bytes: u64,
    /// An attempt still `Assigned` this long after assignment is requeued.
    pub start_timeout: Duration,
    /// An agent not heard from for this long is `unreachable` (its tasks are kept).
    pub unreachable_after: Duration,
    /// An agent not heard from for this long is `dead` (its tasks are requeued).
    pub dead_after: Duration,
    /// How often agents should heartbeat.
    pub heartbeat_interval: Duration,
    pub default_timeout_secs: u64,
    pub default_max_attempts: u32,
    /// How long an idempotency key names its first job; after it, the key may name a new job
    /// (see [`crate::retention::idempotency_live`]).
    pub idempotency_window: Duration,
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            output_cap_bytes: 1024 * 1024,
            start_timeout: Duration::from_secs(60),
            unreachable_after: Duration::from_secs(6),
            dead_after: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(2),
            default_timeout_secs: 3600,
            default_max_attempts: 3,
            idempotency_window: crate::retention::DEFAULT_IDEMPOTENCY_WINDOW,
        }
    }
}

/// Largest accepted command line, argv total, or environment value.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;
/// Longest job timeout accepted (7 days).
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;
const MAX_ENV_VARS: usize = 256;
const CAS_RETRIES: usize = 32;
/// Most queued jobs of one tenant looked at in one scheduling pass.
pub const MAX_SCAN_PER_PASS: usize = 256;

/// The job service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Jobs {
    store: DynStore,
    cfg: JobsConfig,
    /// This node's memory of the agents it hears from (shared by the clones).
    seen: std::sync::Arc<liveness::Seen>,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model types always serialize")
}

fn dec<T: DeserializeOwned>(k: &Key, bytes: &[u8]) -> Result<T> {
    crate::stored::decode(k, bytes, |key, reason| JobError::Corrupt { key, reason })
}

/// An agent runs at most 1024 attempts at once (its slots are capped), each named by an id
/// the server made.
fn check_running(running: &[String]) -> Result<()> {
    crate::model::validate_running(running).map_err(JobError::Invalid)
}

/// Adds to `txn` the write of job record `new` (expecting `expect` of the record) and the
/// index entries that follow it from `old` (`None` for a new job): every write of a job record
/// goes through here, so the listing indexes change in the same transaction as the record.
fn put_job(txn: Txn, tenant: &str, old: Option<&Job>, new: &Job, expect: Expect) -> Result<Txn> {
    let (puts, deletes) = listing::index_changes(old, new);
    let mut txn = txn.put(Key::new(tenant, keys::job(&new.job_id))?, enc(new), expect);
    // Every job write goes through here, so every submission, start and end is told.
    if let Some(e) = crate::events::Event::of_job(old, new) {
        crate::events::record(&mut txn, tenant, &e)?;
    }
    for p in puts {
        txn = txn.put(Key::new(tenant, p)?, Vec::new(), Expect::Any);
    }
    for p in deletes {
        txn = txn.delete(Key::new(tenant, p)?, Expect::Any);
    }
    Ok(txn)
}

/// Adds to `txn` the `job.started` event of a job that goes from assigned to its end in one
/// write (its start was not reported on its own): the event its start would have told.
fn record_start(mut txn: Txn, tenant: &str, assigned: &Job, at: Millis) -> Result<Txn> {
    let mut running = assigned.clone();
    running.status = JobStatus::Running;
    running.started_at.get_or_insert(at);
    running.updated_at = at;
    if let Some(e) = crate::events::Event::of_job(Some(assigned), &running) {
        crate::events::record(&mut txn, tenant, &e)?;
    }
    Ok(txn)
}

/// A job that has ended no longer needs its secret values: they go with the write that ends it.
fn forget_secrets(txn: Txn, tenant: &str, job: &Job) -> Result<Txn> {
    if job.status.is_terminal() && !job.secret_env.is_empty() {
        Ok(txn.delete(Key::new(tenant, keys::secrets(&job.job_id))?, Expect::Any))
    } else {
        Ok(txn)
    }
}

/// The error of an agent whose record kept changing under a read-modify-write.
fn agent_contended(node_id: &str) -> JobError {
    JobError::Conflict(format!("agent {node_id} record is contended; retry"))
}

fn is_conflict(e: &JobError) -> bool {
    matches!(e, JobError::Store(StoreError::Conflict { .. }))
}

impl Jobs {
    pub fn new(store: DynStore, cfg: JobsConfig) -> Jobs {
        Jobs {
            store,
            cfg,
            seen: Default::default(),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn config(&self) -> &JobsConfig {
        &self.cfg
    }

    async fn load<T: DeserializeOwned>(&self, k: &Key) -> Result<Option<(T, Version)>> {
        match self.store.get(k).await? {
            None => Ok(None),
            Some(v) => Ok(Some((dec(k, &v.value)?, v.version))),
        }
    }

    /// [`Jobs::load`] of an object that must exist: an absent one is `NotFound(what())`.
    async fn load_found<T: DeserializeOwned>(
        &self,
        k: &Key,
        what: impl FnOnce() -> String,
    ) -> Result<(T, Version)> {
        self.load(k)
            .await?
            .ok_or_else(|| JobError::NotFound(what()))
    }

    /// Commits `txn` of a read-modify-write: `true` when it landed, `false` when a version it
    /// expected had moved (the caller reads again and retries).
    async fn committed(&self, txn: Txn) -> Result<bool> {
        Ok(crate::store::landed(self.store.commit(txn).await)?)
    }

    async fn list_objects<T: DeserializeOwned>(
        &self,
        tenant: &str,
        prefix: &str,
    ) -> Result<Vec<(T, Version)>> {
        crate::stored::list(self.store.as_ref(), tenant, prefix, dec).await
    }
}
