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

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::keys;
use crate::model::{
    Agent, AgentState, Attempt, AttemptResult, AttemptState, CommandSpec, Heartbeat,
    HeartbeatReply, Job, JobStatus, Millis, Outcome, OutputChunk, Pending, RegisterAgent,
    StoredChunk, SubmitJob, Task, attempt_id, labels_match, parse_attempt_id, valid_ident,
};
use crate::store::{DynStore, Epoch, Expect, Key, StoreError, Txn, Version};

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
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for JobError {
    fn from(e: StoreError) -> JobError {
        match e {
            StoreError::InvalidKey(m) => JobError::Invalid(m),
            other => JobError::Store(other),
        }
    }
}

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
}

fn key(tenant: &str, path: String) -> Result<Key> {
    Ok(Key::new(tenant, path)?)
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("model types always serialize")
}

fn dec<T: DeserializeOwned>(k: &Key, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| JobError::Corrupt {
        key: k.to_string(),
        reason: e.to_string(),
    })
}

/// An agent runs at most this many attempts at once (its slots are capped at 1024).
fn check_running(running: &[String]) -> Result<()> {
    if running.len() > 1024 {
        return Err(JobError::Invalid(
            "an agent reports at most 1024 running attempts".into(),
        ));
    }
    Ok(())
}

/// A job that has ended no longer needs its secret values: they go with the write that ends it.
fn forget_secrets(txn: Txn, tenant: &str, job: &Job) -> Result<Txn> {
    if job.status.is_terminal() && !job.secret_env.is_empty() {
        Ok(txn.delete(key(tenant, keys::secrets(&job.job_id))?, Expect::Any))
    } else {
        Ok(txn)
    }
}

fn is_conflict(e: &JobError) -> bool {
    matches!(e, JobError::Store(StoreError::Conflict { .. }))
}

/// Validates a submission and turns it into what to run.
pub fn validate_submit(req: &SubmitJob) -> Result<CommandSpec> {
    let command = match (&req.command, &req.argv) {
        (Some(c), None) => {
            if c.trim().is_empty() {
                return Err(JobError::Invalid("command must not be empty".into()));
            }
            if c.len() > MAX_COMMAND_BYTES {
                return Err(JobError::Invalid(format!(
                    "command is {} bytes; the limit is {MAX_COMMAND_BYTES}",
                    c.len()
                )));
            }
            CommandSpec::Shell(c.clone())
        }
        (None, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(JobError::Invalid("argv must name a program".into()));
            }
            if argv.iter().map(String::len).sum::<usize>() > MAX_COMMAND_BYTES {
                return Err(JobError::Invalid(format!(
                    "argv exceeds {MAX_COMMAND_BYTES} bytes"
                )));
            }
            CommandSpec::Argv(argv.clone())
        }
        (Some(_), Some(_)) => {
            return Err(JobError::Invalid(
                "give either command or argv, not both".into(),
            ));
        }
        (None, None) => return Err(JobError::Invalid("command (or argv) is required".into())),
    };
    if let Some(n) = &req.node_id
        && !valid_ident(n)
    {
        return Err(JobError::Invalid(format!(
            "node_id {n:?} must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        )));
    }
    if req.env.len() > MAX_ENV_VARS {
        return Err(JobError::Invalid(format!(
            "at most {MAX_ENV_VARS} environment variables"
        )));
    }
    for (k, v) in &req.env {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok {
            return Err(JobError::Invalid(format!(
                "environment variable name {k:?} is not valid"
            )));
        }
        if v.len() > MAX_COMMAND_BYTES || v.contains('\0') {
            return Err(JobError::Invalid(format!(
                "environment variable {k} has an invalid value"
            )));
        }
    }
    if req.secret_env.len() > 64 {
        return Err(JobError::Invalid(
            "at most 64 secret environment variables".into(),
        ));
    }
    for (k, v) in &req.secret_env {
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !ok || req.env.contains_key(k) {
            return Err(JobError::Invalid(format!(
                "secret environment variable name {k:?} is not valid or also in env"
            )));
        }
        // The value is never echoed back, not even in an error.
        if v.len() < crate::redact::MIN_SECRET_LEN
            || v.len() > MAX_COMMAND_BYTES
            || v.contains('\0')
        {
            return Err(JobError::Invalid(format!(
                "secret environment variable {k} must be {} to {MAX_COMMAND_BYTES} bytes without NUL",
                crate::redact::MIN_SECRET_LEN
            )));
        }
    }
    if let Some(w) = &req.workdir
        && (!w.starts_with('/') || w.len() > 4096 || w.contains('\0'))
    {
        return Err(JobError::Invalid("workdir must be an absolute path".into()));
    }
    if let Some(t) = req.timeout_secs
        && !(1..=MAX_TIMEOUT_SECS).contains(&t)
    {
        return Err(JobError::Invalid(format!(
            "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
        )));
    }
    if req.node_id.is_some() && !req.selector.is_empty() {
        return Err(JobError::Invalid(
            "give either node_id or selector, not both".into(),
        ));
    }
    if req.selector.len() > 64
        || req
            .selector
            .iter()
            .any(|(k, v)| !valid_ident(k) || v.is_empty() || v.len() > 256)
    {
        return Err(JobError::Invalid(
            "selector: at most 64 labels, names of A-Z a-z 0-9 . _ -, values of 1 to 256 bytes"
                .into(),
        ));
    }
    if req.fan_out && (req.selector.is_empty() || req.idempotency_key.is_some()) {
        return Err(JobError::Invalid(
            "fan_out needs a selector and takes no idempotency key".into(),
        ));
    }
    if let Some(p) = req.priority
        && !(-100..=100).contains(&p)
    {
        return Err(JobError::Invalid(
            "priority must be between -100 and 100".into(),
        ));
    }
    if let Some(m) = req.max_attempts
        && !(1..=10).contains(&m)
    {
        return Err(JobError::Invalid(
            "max_attempts must be between 1 and 10".into(),
        ));
    }
    if let Some(k) = &req.idempotency_key
        && !valid_ident(k)
    {
        return Err(JobError::Invalid(
            "idempotency key must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into(),
        ));
    }
    Ok(command)
}

/// Filters for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub node_id: Option<String>,
    pub group: Option<String>,
    pub limit: Option<usize>,
}

/// What a sweep did, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub marked_unreachable: usize,
    pub marked_dead: usize,
    pub requeued: usize,
    pub failed: usize,
}

impl Jobs {
    pub fn new(store: DynStore, cfg: JobsConfig) -> Jobs {
        Jobs { store, cfg }
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

    async fn list_objects<T: DeserializeOwned>(
        &self,
        tenant: &str,
        prefix: &str,
    ) -> Result<Vec<(T, Version)>> {
        self.store
            .list(tenant, prefix)
            .await?
            .into_iter()
            .map(|e| Ok((dec(&e.key, &e.value)?, e.version)))
            .collect()
    }

    /// Validates a submission and builds the job with the transaction that creates it (job,
    /// pending entry, idempotency key), without committing. Callers that must create a job
    /// atomically with other writes add theirs to the transaction.
    pub fn prepare_submit(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        now: Millis,
    ) -> Result<(Job, Txn)> {
        let req = req.clone();
        let command = validate_submit(&req)?;
        let job_id = format!("j-{}", uuid::Uuid::now_v7().simple());
        let job = Job {
            job_id: job_id.clone(),
            tenant: tenant.to_string(),
            command,
            node_id: req.node_id,
            env: req.env,
            secret_env: req.secret_env.keys().cloned().collect(),
            workdir: req.workdir,
            timeout_secs: req.timeout_secs.unwrap_or(self.cfg.default_timeout_secs),
            max_attempts: req.max_attempts.unwrap_or(self.cfg.default_max_attempts),
            priority: req.priority.unwrap_or(0),
            selector: req.selector.clone(),
            group: None,
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
            idempotency_key: req.idempotency_key.clone(),
            submitted_by: submitted_by.to_string(),
        };
        let mut txn = Txn::new()
            .put(key(tenant, keys::job(&job_id))?, enc(&job), Expect::Absent)
            .put(
                key(tenant, keys::pending(&job_id))?,
                enc(&Pending::of(&job)),
                Expect::Absent,
            );
        if !req.secret_env.is_empty() {
            txn = txn.put(
                key(tenant, keys::secrets(&job_id))?,
                enc(&req.secret_env),
                Expect::Absent,
            );
        }
        if let Some(k) = &req.idempotency_key {
            txn = txn.put(
                key(tenant, keys::idempotency(k))?,
                job_id.clone().into_bytes(),
                Expect::Absent,
            );
        }
        Ok((job, txn))
    }

    /// The agents a fan-out with this selector reaches: the tenant's online agents whose labels
    /// match. Fails when there are none, or more than a fan-out may reach.
    pub async fn fan_out_targets(
        &self,
        tenant: &str,
        selector: &BTreeMap<String, String>,
    ) -> Result<Vec<Agent>> {
        let agents: Vec<Agent> = self
            .agents(tenant)
            .await?
            .into_iter()
            .filter(|a| a.state == AgentState::Online && labels_match(selector, &a.labels))
            .collect();
        if agents.is_empty() {
            return Err(JobError::Invalid(
                "no online agent of this tenant matches the selector".into(),
            ));
        }
        if agents.len() > 1000 {
            return Err(JobError::Invalid(format!(
                "the selector matches {} agents; a fan-out reaches at most 1000",
                agents.len()
            )));
        }
        Ok(agents)
    }

    /// Submits one job per agent of `agents` (from [`Jobs::fan_out_targets`]), all in one
    /// transaction, each pinned to its agent and tagged with a common `group`.
    pub async fn submit_fan_out(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        agents: Vec<Agent>,
        now: Millis,
    ) -> Result<(String, Vec<Job>)> {
        validate_submit(req)?;
        let group = format!("g-{}", uuid::Uuid::now_v7().simple());
        let mut txn = Txn::new();
        let mut jobs = Vec::with_capacity(agents.len());
        for a in agents {
            let one = SubmitJob {
                node_id: Some(a.node_id.clone()),
                selector: BTreeMap::new(),
                fan_out: false,
                ..req.clone()
            };
            let (mut job, part) = self.prepare_submit(tenant, submitted_by, &one, now)?;
            job.selector = req.selector.clone();
            job.group = Some(group.clone());
            for op in part.ops {
                // The job record carries the group and the selector it was chosen by.
                txn.ops.push(match op {
                    crate::store::Op::Put { key, expect, .. }
                        if key.path() == keys::job(&job.job_id) =>
                    {
                        crate::store::Op::Put {
                            key,
                            value: enc(&job),
                            expect,
                        }
                    }
                    crate::store::Op::Put { key, expect, .. }
                        if key.path() == keys::pending(&job.job_id) =>
                    {
                        crate::store::Op::Put {
                            key,
                            value: enc(&Pending::of(&job)),
                            expect,
                        }
                    }
                    other => other,
                });
            }
            jobs.push(job);
        }
        self.store.commit(txn).await?;
        Ok((group, jobs))
    }

    /// Submits a job. Returns the job and whether it was created (`false` when the idempotency
    /// key named an earlier submission, which is returned instead).
    pub async fn submit(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: SubmitJob,
        now: Millis,
    ) -> Result<(Job, bool)> {
        let (job, txn) = self.prepare_submit(tenant, submitted_by, &req, now)?;
        let idem = match &req.idempotency_key {
            Some(k) => Some(key(tenant, keys::idempotency(k))?),
            None => None,
        };
        match self.store.commit(txn).await {
            Ok(_) => Ok((job, true)),
            Err(StoreError::Conflict { key: k, .. })
                if idem.as_ref().is_some_and(|i| i.to_string() == k) =>
            {
                let ik = idem.expect("checked above");
                let earlier = self.store.get(&ik).await?.ok_or_else(|| {
                    JobError::Conflict("idempotency key is being reused concurrently; retry".into())
                })?;
                let earlier_id = String::from_utf8_lossy(&earlier.value).to_string();
                let earlier = self.get(tenant, &earlier_id).await?;
                // A replay must be the same request; anything else is a client bug to surface.
                let same = (
                    &earlier.command,
                    &earlier.node_id,
                    &earlier.env,
                    &earlier.secret_env,
                    &earlier.selector,
                    earlier.priority,
                    &earlier.workdir,
                    earlier.timeout_secs,
                    earlier.max_attempts,
                ) == (
                    &job.command,
                    &job.node_id,
                    &job.env,
                    &job.secret_env,
                    &job.selector,
                    job.priority,
                    &job.workdir,
                    job.timeout_secs,
                    job.max_attempts,
                );
                if !same {
                    return Err(JobError::Conflict(format!(
                        "idempotency key already used by job {earlier_id} with a different request"
                    )));
                }
                Ok((earlier, false))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get(&self, tenant: &str, job_id: &str) -> Result<Job> {
        if !valid_ident(job_id) {
            return Err(JobError::NotFound(format!("job {job_id}")));
        }
        self.load(&key(tenant, keys::job(job_id))?)
            .await?
            .map(|(j, _)| j)
            .ok_or_else(|| JobError::NotFound(format!("job {job_id}")))
    }

    /// Lists a tenant's jobs, newest first.
    pub async fn list(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut jobs: Vec<Job> =
            self.list_objects::<Job>(tenant, keys::JOBS)
                .await?
                .into_iter()
                .map(|(j, _)| j)
                .filter(|j| filter.status.is_none_or(|s| j.status == s))
                .filter(|j| filter.group.is_none() || j.group == filter.group)
                .filter(|j| {
                    filter.node_id.as_ref().is_none_or(|n| {
                        j.node_id.as_ref() == Some(n) || j.agent.as_ref() == Some(n)
                    })
                })
                .collect();
        jobs.reverse();
        if let Some(l) = filter.limit {
            jobs.truncate(l);
        }
        Ok(jobs)
    }

    pub async fn attempts(&self, tenant: &str, job_id: &str) -> Result<Vec<Attempt>> {
        self.get(tenant, job_id).await?;
        Ok(self
            .list_objects::<Attempt>(tenant, &keys::attempts(job_id))
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    /// Stored output of an attempt from chunk `from_seq` on.
    pub async fn output(
        &self,
        tenant: &str,
        attempt_id: &str,
        from_seq: u64,
    ) -> Result<Vec<StoredChunk>> {
        Ok(self
            .list_objects::<StoredChunk>(tenant, &keys::output(attempt_id))
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.seq >= from_seq)
            .collect())
    }

    /// Cancels a job: a queued job ends at once; an assigned or running one is asked to stop
    /// through its agent's inbox and ends when the agent reports.
    pub async fn cancel(&self, tenant: &str, job_id: &str, now: Millis) -> Result<Job> {
        let jk = key(tenant, keys::job(job_id))?;
        for _ in 0..CAS_RETRIES {
            let (mut job, jv) = self
                .load::<Job>(&jk)
                .await?
                .ok_or_else(|| JobError::NotFound(format!("job {job_id}")))?;
            if job.status.is_terminal() || job.cancel_requested {
                return Ok(job);
            }
            job.updated_at = now;
            let mut txn = Txn::new();
            if job.status == JobStatus::Queued {
                job.status = JobStatus::Cancelled;
                job.finished_at = Some(now);
                job.error = Some("cancelled before it started".into());
                txn = txn.delete(key(tenant, keys::pending(job_id))?, Expect::Any);
            } else {
                job.cancel_requested = true;
                if let (Some(att), Some(agent)) = (&job.current_attempt, &job.agent) {
                    let ik = key(tenant, keys::inbox_entry(agent, att))?;
                    if let Some((mut task, tv)) = self.load::<Task>(&ik).await? {
                        task.cancel = true;
                        txn = txn.put(ik, enc(&task), Expect::Version(tv));
                    }
                }
            }
            txn = txn.put(jk.clone(), enc(&job), Expect::Version(jv));
            txn = forget_secrets(txn, tenant, &job)?;
            match self.store.commit(txn).await {
                Ok(_) => return Ok(job),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "job {job_id} is changing too fast; retry"
        )))
    }

    // ---- leader: assignment -------------------------------------------------------------

    /// Assigns a tenant's queued jobs to online agents with free slots: highest priority
    /// first, then oldest. At most [`MAX_SCAN_PER_PASS`] queued jobs are looked at per pass, so
    /// a tenant with a huge queue costs the leader a bounded amount of work per pass and every
    /// other tenant still gets its turn; with `max_running`, no more than that many of the
    /// tenant's attempts are assigned or running at once. Returns how many were assigned.
    pub async fn schedule_tenant(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        max_running: Option<u64>,
    ) -> Result<usize> {
        let pending = self.store.list(tenant, keys::PENDING).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let mut pending: Vec<(Pending, crate::store::Entry)> = pending
            .into_iter()
            .map(|e| {
                (
                    serde_json::from_slice::<Pending>(&e.value).unwrap_or_default(),
                    e,
                )
            })
            .collect();
        // Job ids are time-ordered, so within one priority the path order is the age order.
        pending.sort_by(|(a, ea), (b, eb)| {
            b.priority
                .cmp(&a.priority)
                .then_with(|| ea.key.path().cmp(eb.key.path()))
        });
        let agents: BTreeMap<String, Agent> = self
            .list_objects::<Agent>(tenant, keys::AGENTS)
            .await?
            .into_iter()
            .map(|(a, _)| (a.node_id.clone(), a))
            .collect();
        let mut load: HashMap<String, u32> = HashMap::new();
        for e in self.store.list(tenant, keys::INBOX).await? {
            if let Some(agent) = e.key.path().split('/').nth(1) {
                *load.entry(agent.to_string()).or_default() += 1;
            }
        }
        let mut assigned = 0;
        let mut in_flight: u64 = load.values().map(|n| u64::from(*n)).sum();
        let mut scanned = 0usize;
        for (meta, p) in pending {
            if max_running.is_some_and(|m| in_flight >= m) || scanned >= MAX_SCAN_PER_PASS {
                break;
            }
            // Can take one more attempt now.
            let free = |a: &Agent| {
                a.state == AgentState::Online
                    && load.get(&a.node_id).copied().unwrap_or(0) < a.slots
            };
            if !agents.values().any(free) {
                break;
            }
            // A job that no free agent could take now is passed over unread: only jobs that
            // can be placed count towards the pass's budget, so none can block the queue.
            let placeable = match &meta.node_id {
                Some(n) => agents.get(n).is_some_and(free),
                None => agents
                    .values()
                    .any(|a| free(a) && labels_match(&meta.selector, &a.labels)),
            };
            if !placeable {
                continue;
            }
            scanned += 1;
            let Some(job_id) = p.key.path().strip_prefix(keys::PENDING) else {
                continue;
            };
            let jk = key(tenant, keys::job(job_id))?;
            let Some((mut job, jv)) = self.load::<Job>(&jk).await? else {
                // Pending entry without a job: remove it.
                let _ = self
                    .store
                    .commit(
                        Txn::new()
                            .delete(p.key.clone(), Expect::Version(p.version))
                            .fenced(epoch),
                    )
                    .await;
                continue;
            };
            if job.status != JobStatus::Queued {
                let _ = self
                    .store
                    .commit(
                        Txn::new()
                            .delete(p.key.clone(), Expect::Version(p.version))
                            .fenced(epoch),
                    )
                    .await;
                continue;
            }
            if Pending::of(&job) != meta {
                // An entry from before entries described their job: describe it now, so the
                // next pass can pass it over unread.
                let _ = self
                    .store
                    .commit(
                        Txn::new()
                            .put(
                                p.key.clone(),
                                enc(&Pending::of(&job)),
                                Expect::Version(p.version),
                            )
                            .fenced(epoch),
                    )
                    .await;
                continue;
            }
            let chosen = match &job.node_id {
                Some(n) => agents.get(n).filter(|a| free(a)),
                None => agents
                    .values()
                    .filter(|a| free(a) && labels_match(&job.selector, &a.labels))
                    .min_by_key(|a| {
                        (
                            load.get(&a.node_id).copied().unwrap_or(0),
                            a.node_id.clone(),
                        )
                    }),
            };
            let Some(agent) = chosen else { continue };
            let number = job.attempts + 1;
            let att_id = attempt_id(&job.job_id, number);
            let attempt = Attempt {
                attempt_id: att_id.clone(),
                job_id: job.job_id.clone(),
                number,
                agent: agent.node_id.clone(),
                state: AttemptState::Assigned,
                assigned_at: now,
                start_deadline: now + self.cfg.start_timeout.as_millis() as u64,
                started_at: None,
                finished_at: None,
                result: None,
                abandoned_reason: None,
                output_bytes: 0,
                output_dropped: 0,
                output_seq: 0,
            };
            let secret_env = if job.secret_env.is_empty() {
                BTreeMap::new()
            } else {
                self.load::<BTreeMap<String, String>>(&key(tenant, keys::secrets(&job.job_id))?)
                    .await?
                    .map(|(s, _)| s)
                    .unwrap_or_default()
            };
            let task = Task {
                attempt_id: att_id.clone(),
                job_id: job.job_id.clone(),
                command: job.command.clone(),
                env: job.env.clone(),
                secret_env,
                workdir: job.workdir.clone(),
                timeout_secs: job.timeout_secs,
                cancel: false,
                revision: 0,
            };
            job.status = JobStatus::Assigned;
            job.attempts = number;
            job.current_attempt = Some(att_id.clone());
            job.agent = Some(agent.node_id.clone());
            job.updated_at = now;
            let txn = Txn::new()
                .fenced(epoch)
                .put(jk, enc(&job), Expect::Version(jv))
                .put(
                    key(tenant, keys::attempt(&job.job_id, number))?,
                    enc(&attempt),
                    Expect::Absent,
                )
                .put(
                    key(tenant, keys::inbox_entry(&agent.node_id, &att_id))?,
                    enc(&task),
                    Expect::Absent,
                )
                .delete(p.key.clone(), Expect::Version(p.version));
            match self.store.commit(txn).await {
                Ok(_) => {
                    assigned += 1;
                    in_flight += 1;
                    *load.entry(agent.node_id.clone()).or_default() += 1;
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(assigned)
    }

    // ---- leader: liveness and requeue ------------------------------------------------------

    /// Marks silent agents unreachable or dead and requeues the attempts of dead agents and
    /// attempts not started by their deadline. `grace_from` is the time this leader was elected:
    /// no agent is judged on silence from before it.
    pub async fn sweep_tenant(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        grace_from: Millis,
    ) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let mut states: HashMap<String, AgentState> = HashMap::new();
        for (mut agent, av) in self.list_objects::<Agent>(tenant, keys::AGENTS).await? {
            let silent = now.saturating_sub(agent.last_seen.max(grace_from));
            let next = if silent >= self.cfg.dead_after.as_millis() as u64 {
                AgentState::Dead
            } else if silent >= self.cfg.unreachable_after.as_millis() as u64 {
                AgentState::Unreachable
            } else {
                agent.state
            };
            if next != agent.state && agent.state != AgentState::Dead {
                let ak = key(tenant, keys::agent(&agent.node_id))?;
                let marked = Agent {
                    state: next,
                    ..agent.clone()
                };
                match self
                    .store
                    .commit(Txn::new().fenced(epoch).put(
                        ak.clone(),
                        enc(&marked),
                        Expect::Version(av),
                    ))
                    .await
                {
                    Ok(_) => {
                        match next {
                            AgentState::Dead => report.marked_dead += 1,
                            AgentState::Unreachable => report.marked_unreachable += 1,
                            AgentState::Online => {}
                        }
                        agent = marked;
                    }
                    Err(StoreError::Conflict { .. }) => {
                        // The agent wrote meanwhile (a heartbeat): what it is now is what the
                        // store says, not what this sweep wanted. Its attempts are judged on that.
                        agent = match self.load::<Agent>(&ak).await? {
                            Some((a, _)) => a,
                            None => continue,
                        };
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            states.insert(agent.node_id.clone(), agent.state);
        }
        for entry in self.store.list(tenant, keys::INBOX).await? {
            let task: Task = dec(&entry.key, &entry.value)?;
            let Some((job_id, number)) = parse_attempt_id(&task.attempt_id) else {
                continue;
            };
            let ak = key(tenant, keys::attempt(job_id, number))?;
            let Some((attempt, atv)) = self.load::<Attempt>(&ak).await? else {
                continue;
            };
            let reason = match (states.get(&attempt.agent), attempt.state) {
                (_, AttemptState::Finished | AttemptState::Abandoned) => {
                    // Leftover inbox entry: clean it up.
                    let _ = self
                        .store
                        .commit(
                            Txn::new()
                                .fenced(epoch)
                                .delete(entry.key.clone(), Expect::Version(entry.version)),
                        )
                        .await;
                    continue;
                }
                (Some(AgentState::Dead) | None, _) => format!("agent {} is dead", attempt.agent),
                (_, AttemptState::Assigned) if now > attempt.start_deadline => {
                    format!("agent {} did not start it in time", attempt.agent)
                }
                _ => continue,
            };
            match self
                .requeue(
                    tenant,
                    Some(epoch),
                    now,
                    attempt,
                    atv,
                    entry.key.clone(),
                    &reason,
                )
                .await
            {
                Ok(true) => report.requeued += 1,
                Ok(false) => report.failed += 1,
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Abandons an attempt and puts its job back in the queue (or fails it when out of attempts,
    /// or ends it cancelled when a cancel was pending). Returns whether the job was requeued.
    #[allow(clippy::too_many_arguments)]
    async fn requeue(
        &self,
        tenant: &str,
        epoch: Option<Epoch>,
        now: Millis,
        mut attempt: Attempt,
        atv: Version,
        inbox_key: Key,
        reason: &str,
    ) -> Result<bool> {
        let jk = key(tenant, keys::job(&attempt.job_id))?;
        let (mut job, jv) = self
            .load::<Job>(&jk)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("job {}", attempt.job_id)))?;
        attempt.state = AttemptState::Abandoned;
        attempt.abandoned_reason = Some(reason.to_string());
        let ak = key(tenant, keys::attempt(&attempt.job_id, attempt.number))?;
        let mut txn = Txn::new();
        if let Some(e) = epoch {
            txn = txn.fenced(e);
        }
        let mut txn = txn
            .put(ak, enc(&attempt), Expect::Version(atv))
            .delete(inbox_key, Expect::Any);
        let mut requeued = false;
        if job.current_attempt.as_deref() == Some(attempt.attempt_id.as_str())
            && !job.status.is_terminal()
        {
            job.updated_at = now;
            job.current_attempt = None;
            if job.cancel_requested {
                job.status = JobStatus::Cancelled;
                job.finished_at = Some(now);
                job.error = Some(format!("cancelled; {reason}"));
            } else if job.attempts < job.max_attempts {
                job.status = JobStatus::Queued;
                job.agent = None;
                requeued = true;
                txn = txn.put(
                    key(tenant, keys::pending(&job.job_id))?,
                    enc(&Pending::of(&job)),
                    Expect::Any,
                );
            } else {
                job.status = JobStatus::Failed;
                job.finished_at = Some(now);
                job.error = Some(format!("gave up after {} attempts: {reason}", job.attempts));
            }
            txn = txn.put(jk, enc(&job), Expect::Version(jv));
            txn = forget_secrets(txn, tenant, &job)?;
        }
        tracing::info!(tenant, attempt = %attempt.attempt_id, reason, requeued, "attempt abandoned");
        self.store.commit(txn).await?;
        Ok(requeued)
    }

    // ---- agent protocol -----------------------------------------------------------------

    async fn touch_agent(
        &self,
        tenant: &str,
        node_id: &str,
        now: Millis,
        register: Option<&RegisterAgent>,
    ) -> Result<()> {
        let ak = key(tenant, keys::agent(node_id))?;
        for _ in 0..CAS_RETRIES {
            let found = self.load::<Agent>(&ak).await?;
            let (agent, expect) = match (found, register) {
                (Some((mut a, v)), reg) => {
                    if let Some(r) = reg {
                        a.labels = r.labels.clone();
                        a.slots = r.slots.unwrap_or(a.slots).max(1);
                        a.hostname = r.hostname.clone();
                        a.version = r.version.clone();
                    }
                    if a.state != AgentState::Online {
                        tracing::info!(
                            tenant,
                            node_id,
                            from = a.state.as_str(),
                            "agent back online"
                        );
                    }
                    a.state = AgentState::Online;
                    a.last_seen = now;
                    (a, Expect::Version(v))
                }
                (None, Some(r)) => (
                    Agent {
                        node_id: node_id.to_string(),
                        tenant: tenant.to_string(),
                        labels: r.labels.clone(),
                        slots: r.slots.unwrap_or(4).max(1),
                        state: AgentState::Online,
                        registered_at: now,
                        last_seen: now,
                        hostname: r.hostname.clone(),
                        version: r.version.clone(),
                    },
                    Expect::Absent,
                ),
                (None, None) => {
                    return Err(JobError::NotFound(format!(
                        "agent {node_id} (register first)"
                    )));
                }
            };
            match self.store.put(ak.clone(), enc(&agent), expect).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "agent {node_id} record is contended; retry"
        )))
    }

    /// Attempts among `running` that this agent must stop: not (or no longer) its own, taken
    /// away, finished, or whose job was cancelled.
    async fn stale_attempts(
        &self,
        tenant: &str,
        node_id: &str,
        running: &[String],
    ) -> Result<Vec<String>> {
        let mut cancel = Vec::new();
        for att in running {
            let keep = match parse_attempt_id(att) {
                Some((job_id, n)) if valid_ident(job_id) => {
                    match self
                        .load::<Attempt>(&key(tenant, keys::attempt(job_id, n))?)
                        .await?
                    {
                        Some((a, _)) => {
                            a.agent == node_id
                                && matches!(a.state, AttemptState::Assigned | AttemptState::Running)
                                && !self
                                    .load::<Job>(&key(tenant, keys::job(job_id))?)
                                    .await?
                                    .is_some_and(|(j, _)| j.cancel_requested)
                        }
                        None => false,
                    }
                }
                _ => false,
            };
            if !keep {
                cancel.push(att.clone());
            }
        }
        Ok(cancel)
    }

    /// On registration an agent lists what it is running. An attempt this agent had started
    /// but no longer runs (it crashed and restarted) is lost: it goes back to the queue instead
    /// of being started a second time from the inbox.
    async fn requeue_lost(
        &self,
        tenant: &str,
        node_id: &str,
        running: &[String],
        now: Millis,
    ) -> Result<()> {
        for entry in self.store.list(tenant, &keys::inbox(node_id)).await? {
            let task: Task = dec(&entry.key, &entry.value)?;
            if running.contains(&task.attempt_id) {
                continue;
            }
            let Some((job_id, n)) = parse_attempt_id(&task.attempt_id) else {
                continue;
            };
            let Some((attempt, atv)) = self
                .load::<Attempt>(&key(tenant, keys::attempt(job_id, n))?)
                .await?
            else {
                continue;
            };
            if attempt.agent != node_id || attempt.state != AttemptState::Running {
                continue;
            }
            match self
                .requeue(
                    tenant,
                    None,
                    now,
                    attempt,
                    atv,
                    entry.key.clone(),
                    "the agent restarted without it",
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub async fn register(
        &self,
        tenant: &str,
        node_id: &str,
        req: &RegisterAgent,
        now: Millis,
    ) -> Result<HeartbeatReply> {
        if !valid_ident(node_id) {
            return Err(JobError::Invalid(format!(
                "node id {node_id:?} is not valid"
            )));
        }
        if req.slots.is_some_and(|s| s == 0 || s > 1024) {
            return Err(JobError::Invalid("slots must be between 1 and 1024".into()));
        }
        if req.labels.len() > 64
            || req
                .labels
                .iter()
                .any(|(k, v)| !valid_ident(k) || v.len() > 256)
        {
            return Err(JobError::Invalid(
                "labels: at most 64, names of A-Z a-z 0-9 . _ -, values up to 256 bytes".into(),
            ));
        }
        check_running(&req.running)?;
        self.touch_agent(tenant, node_id, now, Some(req)).await?;
        self.requeue_lost(tenant, node_id, &req.running, now)
            .await?;
        Ok(HeartbeatReply {
            cancel: self.stale_attempts(tenant, node_id, &req.running).await?,
            heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u64,
        })
    }

    pub async fn heartbeat(
        &self,
        tenant: &str,
        node_id: &str,
        hb: &Heartbeat,
        now: Millis,
    ) -> Result<HeartbeatReply> {
        check_running(&hb.running)?;
        self.touch_agent(tenant, node_id, now, None).await?;
        Ok(HeartbeatReply {
            cancel: self.stale_attempts(tenant, node_id, &hb.running).await?,
            heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u64,
        })
    }

    /// Inbox entries of an agent newer than `after` (a store revision).
    pub async fn poll(&self, tenant: &str, node_id: &str, after: u64) -> Result<Vec<Task>> {
        if !valid_ident(node_id) {
            return Err(JobError::Invalid(format!(
                "node id {node_id:?} is not valid"
            )));
        }
        Ok(self
            .list_objects::<Task>(tenant, &keys::inbox(node_id))
            .await?
            .into_iter()
            .filter(|(_, v)| *v > after)
            .map(|(mut t, v)| {
                t.revision = v;
                t
            })
            .collect())
    }

    /// Loads an attempt owned by `node_id` (another agent's attempt answers NotFound).
    async fn own_attempt(
        &self,
        tenant: &str,
        node_id: &str,
        attempt_id: &str,
    ) -> Result<(Key, Attempt, Version)> {
        let not_found = || JobError::NotFound(format!("attempt {attempt_id}"));
        let (job_id, n) = parse_attempt_id(attempt_id).ok_or_else(not_found)?;
        if !valid_ident(job_id) {
            return Err(not_found());
        }
        let ak = key(tenant, keys::attempt(job_id, n))?;
        let (a, v) = self.load::<Attempt>(&ak).await?.ok_or_else(not_found)?;
        if a.agent != node_id {
            return Err(not_found());
        }
        Ok((ak, a, v))
    }

    /// The agent started the attempt.
    pub async fn start(
        &self,
        tenant: &str,
        node_id: &str,
        attempt_id: &str,
        now: Millis,
    ) -> Result<()> {
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, node_id, attempt_id).await?;
            match a.state {
                AttemptState::Running | AttemptState::Finished => return Ok(()),
                AttemptState::Abandoned => {
                    return Err(JobError::Gone(format!(
                        "attempt {attempt_id} was taken away: {}",
                        a.abandoned_reason.unwrap_or_default()
                    )));
                }
                AttemptState::Assigned => {}
            }
            a.state = AttemptState::Running;
            a.started_at = Some(now);
            let jk = key(tenant, keys::job(&a.job_id))?;
            let mut txn = Txn::new().put(ak, enc(&a), Expect::Version(av));
            if let Some((mut job, jv)) = self.load::<Job>(&jk).await?
                && job.current_attempt.as_deref() == Some(attempt_id)
                && job.status == JobStatus::Assigned
            {
                job.status = JobStatus::Running;
                job.started_at.get_or_insert(now);
                job.updated_at = now;
                txn = txn.put(jk, enc(&job), Expect::Version(jv));
            }
            match self.store.commit(txn).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "attempt {attempt_id} is contended; retry"
        )))
    }

    /// Appends one output chunk. Chunks must arrive in sequence; a repeated chunk is accepted
    /// and ignored. Past the cap, bytes are counted as dropped instead of stored.
    pub async fn append_output(
        &self,
        tenant: &str,
        node_id: &str,
        attempt_id: &str,
        chunk: OutputChunk,
    ) -> Result<()> {
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, node_id, attempt_id).await?;
            if a.state == AttemptState::Abandoned {
                return Err(JobError::Gone(format!(
                    "attempt {attempt_id} was taken away"
                )));
            }
            if chunk.seq < a.output_seq || a.state == AttemptState::Finished {
                return Ok(());
            }
            if chunk.seq > a.output_seq {
                return Err(JobError::Conflict(format!(
                    "output chunk {} arrived but chunk {} is expected next",
                    chunk.seq, a.output_seq
                )));
            }
            let room = self.cfg.output_cap_bytes.saturating_sub(a.output_bytes) as usize;
            let mut keep = chunk.data.len().min(room);
            while !chunk.data.is_char_boundary(keep) {
                keep -= 1;
            }
            a.output_seq += 1;
            a.output_bytes += keep as u64;
            a.output_dropped += (chunk.data.len() - keep) as u64;
            let mut txn = Txn::new().put(ak, enc(&a), Expect::Version(av));
            if keep > 0 {
                let stored = StoredChunk {
                    seq: chunk.seq,
                    stream: chunk.stream,
                    data: chunk.data[..keep].to_string(),
                };
                txn = txn.put(
                    key(tenant, keys::output_chunk(attempt_id, chunk.seq))?,
                    enc(&stored),
                    Expect::Any,
                );
            }
            match self.store.commit(txn).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "attempt {attempt_id} is contended; retry"
        )))
    }

    /// Records an attempt's result once. Returns `true` if this call recorded it, `false` for a
    /// repeat (or for an attempt that was taken away, whose result no longer decides the job).
    pub async fn finish(
        &self,
        tenant: &str,
        node_id: &str,
        attempt_id: &str,
        result: AttemptResult,
        now: Millis,
    ) -> Result<bool> {
        if let Some(m) = &result.message
            && m.len() > 4096
        {
            return Err(JobError::Invalid(
                "result message exceeds 4096 bytes".into(),
            ));
        }
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, node_id, attempt_id).await?;
            if matches!(a.state, AttemptState::Finished | AttemptState::Abandoned) {
                return Ok(false);
            }
            let inbox = key(tenant, keys::inbox_entry(node_id, attempt_id))?;
            if result.outcome == Outcome::Cancelled {
                let cancel_requested = self
                    .load::<Job>(&key(tenant, keys::job(&a.job_id))?)
                    .await?
                    .is_some_and(|(j, _)| j.cancel_requested);
                if !cancel_requested {
                    // Stopped on the agent's side (agent shutdown), not by a user: the work was
                    // interrupted, not cancelled, so it goes back to the queue.
                    return match self
                        .requeue(
                            tenant,
                            None,
                            now,
                            a,
                            av,
                            inbox,
                            "interrupted on the agent (agent stopped)",
                        )
                        .await
                    {
                        Ok(_) => Ok(true),
                        Err(e) if is_conflict(&e) => continue,
                        Err(e) => Err(e),
                    };
                }
            }
            a.state = AttemptState::Finished;
            a.started_at.get_or_insert(now);
            a.finished_at = Some(now);
            a.result = Some(result.clone());
            let jk = key(tenant, keys::job(&a.job_id))?;
            let mut txn = Txn::new()
                .put(ak, enc(&a), Expect::Version(av))
                .delete(inbox, Expect::Any);
            if let Some((mut job, jv)) = self.load::<Job>(&jk).await?
                && job.current_attempt.as_deref() == Some(attempt_id)
                && !job.status.is_terminal()
            {
                job.status = match (result.outcome, result.exit_code) {
                    (Outcome::Exited, Some(0)) => JobStatus::Succeeded,
                    (Outcome::TimedOut, _) => JobStatus::TimedOut,
                    (Outcome::Cancelled, _) => JobStatus::Cancelled,
                    _ => JobStatus::Failed,
                };
                job.exit_code = result.exit_code;
                job.signal = result.signal;
                job.error = match result.outcome {
                    Outcome::FailedToStart => {
                        result.message.clone().or(Some("failed to start".into()))
                    }
                    Outcome::TimedOut => Some(format!("timed out after {} s", job.timeout_secs)),
                    _ => None,
                };
                job.started_at.get_or_insert(now);
                job.finished_at = Some(now);
                job.updated_at = now;
                txn = txn.put(jk, enc(&job), Expect::Version(jv));
                txn = forget_secrets(txn, tenant, &job)?;
            }
            match self.store.commit(txn).await {
                Ok(_) => return Ok(true),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "attempt {attempt_id} is contended; retry"
        )))
    }

    /// Every tenant with objects (the leader schedules and sweeps each).
    pub async fn tenants(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| !t.starts_with('_'))
            .collect())
    }

    pub async fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        Ok(self
            .list_objects::<Agent>(tenant, keys::AGENTS)
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    pub async fn agent(&self, tenant: &str, node_id: &str) -> Result<Agent> {
        if !valid_ident(node_id) {
            return Err(JobError::NotFound(format!("agent {node_id}")));
        }
        self.load::<Agent>(&key(tenant, keys::agent(node_id))?)
            .await?
            .map(|(a, _)| a)
            .ok_or_else(|| JobError::NotFound(format!("agent {node_id}")))
    }

    /// Number of queued jobs of a tenant.
    pub async fn queue_depth(&self, tenant: &str) -> Result<usize> {
        Ok(self.store.list(tenant, keys::PENDING).await?.len())
    }
}
