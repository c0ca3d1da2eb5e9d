//! Job submission: validation of a request, the transaction that creates a job (job, queue
//! entry, secrets, idempotency key), idempotent replays, fan-out to every matching agent, and
//! cancel. Nothing here assigns work; the leader's [`super::schedule`] does.

use super::{
    CAS_RETRIES, JobError, Jobs, MAX_COMMAND_BYTES, MAX_ENV_VARS, MAX_TIMEOUT_SECS, Result, enc,
    forget_secrets, put_job,
};
use crate::keys;
use crate::model::{
    Agent, AgentState, CommandSpec, Job, JobKind, JobStatus, Millis, Pending, SubmitJob, Task,
    valid_ident,
};
use crate::selector::Selector;
use crate::store::{Expect, Key, StoreError, Txn};

/// Most arguments of an argv command.
pub const MAX_ARGS: usize = 4096;
/// Longest working directory.
pub const MAX_WORKDIR_BYTES: usize = 4096;
/// Longest environment variable name.
pub const MAX_ENV_NAME_BYTES: usize = 128;
const ENV_NAME_RULE: &str =
    "variable names must be 1 to 128 characters of A-Z, a-z, 0-9 or '_', not starting with a digit";

/// Whether `k` may name an environment variable.
pub fn valid_env_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= MAX_ENV_NAME_BYTES
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Why a job pinned to `agent` may wait, if it may. Pure.
pub fn pinned_warning(agent: &Agent) -> Option<String> {
    let n = &agent.node_id;
    if agent.revoked_at.is_some() {
        Some(format!(
            "node_id: agent {n:?} has been revoked; the job waits until it enrolls again"
        ))
    } else if agent.drained {
        Some(format!(
            "node_id: agent {n:?} is drained; the job waits until it is uncordoned"
        ))
    } else if agent.state == AgentState::Dead {
        Some(format!(
            "node_id: agent {n:?} is dead; the job waits until it comes back"
        ))
    } else {
        None
    }
}

/// Validates a submission and turns it into what to run. Every string is bounded, and every
/// refusal names its field without echoing an unbounded value.
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
            if argv.len() > MAX_ARGS {
                return Err(JobError::Invalid(format!(
                    "argv: at most {MAX_ARGS} arguments"
                )));
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
        return Err(JobError::Invalid(
            "node_id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into(),
        ));
    }
    if req.env.len() > MAX_ENV_VARS {
        return Err(JobError::Invalid(format!(
            "env: at most {MAX_ENV_VARS} environment variables"
        )));
    }
    for (k, v) in &req.env {
        if !valid_env_name(k) {
            return Err(JobError::Invalid(format!("env: {ENV_NAME_RULE}")));
        }
        if v.len() > MAX_COMMAND_BYTES || v.contains('\0') {
            return Err(JobError::Invalid(format!(
                "env: the value of {k} must be at most {MAX_COMMAND_BYTES} bytes without NUL"
            )));
        }
    }
    if req.secret_env.len() > 64 {
        return Err(JobError::Invalid(
            "secret_env: at most 64 secret environment variables".into(),
        ));
    }
    for (k, v) in &req.secret_env {
        if !valid_env_name(k) {
            return Err(JobError::Invalid(format!("secret_env: {ENV_NAME_RULE}")));
        }
        if req.env.contains_key(k) {
            return Err(JobError::Invalid(format!("secret_env: {k} is also in env")));
        }
        // The value is never echoed back, not even in an error.
        if v.len() < crate::redact::MIN_SECRET_LEN
            || v.len() > MAX_COMMAND_BYTES
            || v.contains('\0')
        {
            return Err(JobError::Invalid(format!(
                "secret_env: the value of {k} must be {} to {MAX_COMMAND_BYTES} bytes without NUL",
                crate::redact::MIN_SECRET_LEN
            )));
        }
    }
    if let Some(w) = &req.workdir
        && (!w.starts_with('/') || w.len() > MAX_WORKDIR_BYTES || w.contains('\0'))
    {
        return Err(JobError::Invalid(format!(
            "workdir must be an absolute path of at most {MAX_WORKDIR_BYTES} bytes without NUL"
        )));
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
    // A selector is bounded and valid by construction (it is parsed when the request is read,
    // see `crate::selector`).
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
            "idempotency_key must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into(),
        ));
    }
    Ok(command)
}

/// The submission `txn` with its idempotency key write expecting the key at `version` (an
/// expired key taken over) instead of absent.
fn retarget_idempotency(mut txn: Txn, ik: &crate::store::Key, version: u64) -> Txn {
    for op in &mut txn.ops {
        if let crate::store::Op::Put { key, expect, .. } = op
            && key == ik
        {
            *expect = Expect::Version(version);
        }
    }
    txn
}

impl Jobs {
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
        self.prepare_submit_as(tenant, submitted_by, req, now, JobKind::User)
    }

    /// [`Jobs::prepare_submit`] for a job of `kind` (the reconciler's own jobs).
    pub fn prepare_submit_as(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        now: Millis,
        kind: JobKind,
    ) -> Result<(Job, Txn)> {
        self.prepare(tenant, submitted_by, req, now, |j| j.kind = kind)
    }

    /// [`Jobs::prepare_submit`] for a job of `kind` that belongs to `group` (a rollout's jobs
    /// carry the rollout's id, so `GET /v1/jobs?group=` lists them).
    pub fn prepare_submit_in(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        now: Millis,
        kind: JobKind,
        group: &str,
    ) -> Result<(Job, Txn)> {
        self.prepare(tenant, submitted_by, req, now, |j| {
            j.kind = kind;
            j.group = Some(group.to_string());
        })
    }

    /// Builds the job of a validated submission, lets `shape` finish it (kind, group), and the
    /// transaction that creates it.
    fn prepare(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        now: Millis,
        shape: impl FnOnce(&mut Job),
    ) -> Result<(Job, Txn)> {
        let req = req.clone();
        let command = validate_submit(&req)?;
        let job_id = format!("j-{}", uuid::Uuid::now_v7().simple());
        let mut job = Job {
            node_id: req.node_id,
            env: req.env,
            secret_env: req.secret_env.keys().cloned().collect(),
            workdir: req.workdir,
            priority: req.priority.unwrap_or(0),
            selector: req.selector.clone(),
            idempotency_key: req.idempotency_key.clone(),
            ..Job::queued(
                job_id.clone(),
                tenant,
                command,
                req.timeout_secs.unwrap_or(self.cfg.default_timeout_secs),
                req.max_attempts.unwrap_or(self.cfg.default_max_attempts),
                submitted_by,
                now,
            )
        };
        shape(&mut job);
        let mut txn = put_job(Txn::new(), tenant, None, &job, Expect::Absent)?.put(
            Key::new(tenant, keys::pending(&job_id))?,
            enc(&Pending::of(&job)),
            Expect::Absent,
        );
        if !req.secret_env.is_empty() {
            txn = txn.put(
                Key::new(tenant, keys::secrets(&job_id))?,
                enc(&req.secret_env),
                Expect::Absent,
            );
        }
        if let Some(k) = &req.idempotency_key {
            txn = txn.put(
                Key::new(tenant, keys::idempotency(k))?,
                job_id.clone().into_bytes(),
                Expect::Absent,
            );
        }
        Ok((job, txn))
    }

    /// The agents a fan-out with this selector reaches: the tenant's online agents it matches
    /// (labels, admin labels and facts). Fails when there are none, or more than a fan-out may
    /// reach.
    pub async fn fan_out_targets(&self, tenant: &str, selector: &Selector) -> Result<Vec<Agent>> {
        let agents: Vec<Agent> = self
            .agents(tenant)
            .await?
            .into_iter()
            .filter(|a| a.takes_work() && selector.matches(a))
            .collect();
        if agents.is_empty() {
            return Err(JobError::Invalid(
                "selector: no online agent of this tenant matches it (drained agents are skipped)"
                    .into(),
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

    /// Checks where a job would go before it is queued, so that nobody waits in silence for an
    /// agent that does not exist. A job pinned to a node id no agent of the tenant has enrolled
    /// or registered as is refused (`node_id`), unless `allow_unknown_node` says an agent is
    /// about to enroll; otherwise returns warnings for the reply: a pinned agent that is dead,
    /// drained or revoked, a selector no agent matches.
    pub async fn check_target(&self, tenant: &str, req: &SubmitJob) -> Result<Vec<String>> {
        let mut warnings = Vec::new();
        if req.fan_out {
            return Ok(warnings);
        }
        if let Some(n) = &req.node_id {
            if !valid_ident(n) {
                return Ok(warnings); // validate_submit names the field
            }
            match self
                .load::<Agent>(&Key::new(tenant, keys::agent(n))?)
                .await?
            {
                None if req.allow_unknown_node => warnings.push(format!(
                    "node_id: no agent {n:?} is known yet; the job waits until it registers"
                )),
                None => {
                    return Err(JobError::Invalid(format!(
                        "node_id: no agent {n:?} has enrolled or registered in this tenant \
                         (give allow_unknown_node to queue the job for an agent about to enroll)"
                    )));
                }
                Some((a, _)) => warnings.extend(pinned_warning(&a)),
            }
        } else if !req.selector.is_empty()
            && !self
                .any_agent(tenant, |a| {
                    a.state != AgentState::Dead && req.selector.matches(a)
                })
                .await?
        {
            warnings.push(
                "selector: no live agent of this tenant matches it; the job waits until one does"
                    .into(),
            );
        }
        Ok(warnings)
    }

    /// Builds, without committing, the jobs of one run started by the system (a schedule's
    /// slot): the same validation, target check and fan-out as an ad-hoc submission
    /// ([`Jobs::check_target`], [`Jobs::fan_out_targets`]), every job of `kind` and in `group`.
    /// The caller commits the transaction together with its own record of the run.
    pub async fn prepare_run(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        now: Millis,
        kind: JobKind,
        group: &str,
    ) -> Result<(Vec<Job>, Txn)> {
        validate_submit(req)?;
        if !req.fan_out {
            self.check_target(tenant, req).await?;
            let (job, txn) = self.prepare_submit_in(tenant, submitted_by, req, now, kind, group)?;
            return Ok((vec![job], txn));
        }
        let agents = self.fan_out_targets(tenant, &req.selector).await?;
        self.prepare_fan_out(tenant, submitted_by, req, agents, now, kind, group)
    }

    /// Builds, without committing, one job per agent of `agents`, each pinned to its agent and
    /// carrying `kind`, `group` and the selector it was chosen by, all in one transaction.
    #[allow(clippy::too_many_arguments)]
    fn prepare_fan_out(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: &SubmitJob,
        agents: Vec<Agent>,
        now: Millis,
        kind: JobKind,
        group: &str,
    ) -> Result<(Vec<Job>, Txn)> {
        let mut txn = Txn::new();
        let mut jobs = Vec::with_capacity(agents.len());
        for a in agents {
            let one = SubmitJob {
                node_id: Some(a.node_id.clone()),
                selector: Selector::default(),
                fan_out: false,
                ..req.clone()
            };
            let (job, part) = self.prepare(tenant, submitted_by, &one, now, |j| {
                j.selector = req.selector.clone();
                j.group = Some(group.to_string());
                j.kind = kind;
            })?;
            txn.ops.extend(part.ops);
            jobs.push(job);
        }
        Ok((jobs, txn))
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
        let (jobs, txn) = self.prepare_fan_out(
            tenant,
            submitted_by,
            req,
            agents,
            now,
            JobKind::User,
            &group,
        )?;
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
        let ((job, created), ()) = self
            .submit_then(tenant, submitted_by, req, now, |_| ())
            .await?;
        Ok((job, created))
    }

    /// [`Jobs::submit`], calling `before` with the new job once it is built and before it is
    /// committed (a caller that waits for the job's end registers its wait there, so that no
    /// change of the job can come before it). What `before` returns comes back with the
    /// result; for a replay the job returned is the earlier one, not the one `before` saw.
    pub async fn submit_then<T>(
        &self,
        tenant: &str,
        submitted_by: &str,
        req: SubmitJob,
        now: Millis,
        before: impl FnOnce(&Job) -> T,
    ) -> Result<((Job, bool), T)> {
        let (job, txn) = self.prepare_submit(tenant, submitted_by, &req, now)?;
        let seen = before(&job);
        Ok((
            self.commit_submission(tenant, &req, job, txn, now).await?,
            seen,
        ))
    }

    async fn commit_submission(
        &self,
        tenant: &str,
        req: &SubmitJob,
        job: Job,
        mut txn: Txn,
        now: Millis,
    ) -> Result<(Job, bool)> {
        let idem = match &req.idempotency_key {
            Some(k) => Some(Key::new(tenant, keys::idempotency(k))?),
            None => None,
        };
        for _ in 0..CAS_RETRIES {
            let ik = match self.store.commit(txn.clone()).await {
                Ok(_) => return Ok((job, true)),
                Err(StoreError::Conflict { key: k, .. })
                    if idem.as_ref().is_some_and(|i| i.to_string() == k) =>
                {
                    idem.clone().expect("checked above")
                }
                Err(e) => return Err(e.into()),
            };
            let Some(earlier) = self.store.get(&ik).await? else {
                // The key was collected between the two reads: create again.
                continue;
            };
            let earlier_id = String::from_utf8_lossy(&earlier.value).to_string();
            let earlier_job = match self.get(tenant, &earlier_id).await {
                Ok(j) => Some(j),
                Err(JobError::NotFound(_)) => None,
                Err(e) => return Err(e),
            };
            let live = earlier_job.as_ref().is_some_and(|j| {
                crate::retention::idempotency_live(j.created_at, now, self.cfg.idempotency_window)
            });
            let Some(earlier) = earlier_job.filter(|_| live) else {
                // The key's window has passed (or its job is gone): it names the new job, in a
                // write that expects the key exactly as read, so two submissions racing for an
                // expired key cannot both take it.
                txn = retarget_idempotency(txn, &ik, earlier.version);
                continue;
            };
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
            return Ok((earlier, false));
        }
        Err(JobError::Conflict(
            "idempotency key is being reused concurrently; retry".into(),
        ))
    }

    /// Cancels a job: a queued job ends at once; an assigned or running one is asked to stop
    /// through its agent's inbox and ends when the agent reports.
    pub async fn cancel(&self, tenant: &str, job_id: &str, now: Millis) -> Result<Job> {
        self.cancel_fenced(tenant, job_id, now, None).await
    }

    /// [`Jobs::cancel`] as leader work: every write carries `fence` (the leader's epoch).
    pub async fn cancel_fenced(
        &self,
        tenant: &str,
        job_id: &str,
        now: Millis,
        fence: Option<crate::store::Epoch>,
    ) -> Result<Job> {
        let jk = Key::new(tenant, keys::job(job_id))?;
        for _ in 0..CAS_RETRIES {
            let (mut job, jv) = self
                .load_found::<Job>(&jk, || format!("job {job_id}"))
                .await?;
            if job.status.is_terminal() || job.cancel_requested {
                return Ok(job);
            }
            let old = job.clone();
            job.updated_at = now;
            let mut txn = Txn::new();
            if job.status == JobStatus::Queued {
                job.status = JobStatus::Cancelled;
                job.finished_at = Some(now);
                job.error = Some("cancelled before it started".into());
                txn = txn.delete(Key::new(tenant, keys::pending(job_id))?, Expect::Any);
            } else {
                job.cancel_requested = true;
                if let (Some(att), Some(agent)) = (&job.current_attempt, &job.agent) {
                    let ik = Key::new(tenant, keys::inbox_entry(agent, att))?;
                    if let Some((mut task, tv)) = self.load::<Task>(&ik).await? {
                        task.cancel = true;
                        txn = txn.put(ik, enc(&task), Expect::Version(tv));
                    }
                }
            }
            txn = put_job(txn, tenant, Some(&old), &job, Expect::Version(jv))?;
            txn = forget_secrets(txn, tenant, &job)?;
            txn.fence = fence;
            if self.committed(txn).await? {
                return Ok(job);
            }
        }
        Err(JobError::Conflict(format!(
            "job {job_id} is changing too fast; retry"
        )))
    }
}
