//! The leader's scheduling driver: reads a tenant's queue, agents and inboxes, asks
//! [`super::placement`] where each job goes, and commits each assignment as one fenced
//! transaction (job, attempt, inbox entry, queue entry removed) with CAS on every object.
//!
//! read → place → commit: [`Jobs::schedule_tenant`] holds the pass's bounds (scan budget,
//! `max_running`), `queued_job` loads the job a queue entry names (and cleans up stale
//! entries), `assign` builds and commits one assignment.

use std::collections::BTreeMap;

use super::placement::{self, Wants};
use super::{Jobs, MAX_SCAN_PER_PASS, Result, enc, key};
use crate::keys;
use crate::model::{
    Agent, Attempt, AttemptState, Job, JobStatus, Millis, Pending, Task, attempt_id,
};
use crate::store::{Entry, Epoch, Expect, Key, StoreError, Txn, Version};

impl Jobs {
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
        let pending = placement::order_pending(pending);
        let agents: BTreeMap<String, Agent> = self
            .list_objects::<Agent>(tenant, keys::AGENTS)
            .await?
            .into_iter()
            .map(|(a, _)| (a.node_id.clone(), a))
            .collect();
        let inbox = self.store.list(tenant, keys::INBOX).await?;
        let mut load = placement::load_of(inbox.iter().map(|e| e.key.path()));
        let mut assigned = 0;
        let mut in_flight: u64 = load.values().map(|n| u64::from(*n)).sum();
        let mut scanned = 0usize;
        for (meta, p) in pending {
            if max_running.is_some_and(|m| in_flight >= m) || scanned >= MAX_SCAN_PER_PASS {
                break;
            }
            if !placement::any_free(&agents, &load) {
                break;
            }
            // A job that no free agent could take now is passed over unread: only jobs that
            // can be placed count towards the pass's budget, so none can block the queue.
            if !placement::can_place(Wants::pending(&meta), &agents, &load) {
                continue;
            }
            scanned += 1;
            let Some((jk, job, jv)) = self.queued_job(tenant, epoch, &meta, &p).await? else {
                continue;
            };
            let Some(agent) = placement::choose_agent(Wants::job(&job), &agents, &load) else {
                continue;
            };
            if self
                .assign(tenant, epoch, now, (jk, job, jv), agent, &p)
                .await?
            {
                assigned += 1;
                in_flight += 1;
                *load.entry(agent.node_id.clone()).or_default() += 1;
            }
        }
        Ok(assigned)
    }

    /// The queued job that queue entry `p` names, with its key and version. `None` when there is
    /// nothing to assign: the entry is then removed (its job is gone or no longer queued) or
    /// rewritten to describe its job, each as a fenced best-effort write.
    async fn queued_job(
        &self,
        tenant: &str,
        epoch: Epoch,
        meta: &Pending,
        p: &Entry,
    ) -> Result<Option<(Key, Job, Version)>> {
        let Some(job_id) = p.key.path().strip_prefix(keys::PENDING) else {
            return Ok(None);
        };
        let jk = key(tenant, keys::job(job_id))?;
        let Some((job, jv)) = self.load::<Job>(&jk).await? else {
            // Pending entry without a job: remove it.
            self.drop_pending(epoch, p).await;
            return Ok(None);
        };
        if job.status != JobStatus::Queued {
            self.drop_pending(epoch, p).await;
            return Ok(None);
        }
        if Pending::of(&job) != *meta {
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
            return Ok(None);
        }
        Ok(Some((jk, job, jv)))
    }

    /// Removes a queue entry that names no queued job (best effort: a failure leaves it for the
    /// next pass).
    async fn drop_pending(&self, epoch: Epoch, p: &Entry) {
        let _ = self
            .store
            .commit(
                Txn::new()
                    .delete(p.key.clone(), Expect::Version(p.version))
                    .fenced(epoch),
            )
            .await;
    }

    /// Assigns `job` to `agent` in one fenced transaction: the job (CAS on its version), a new
    /// attempt, the agent's inbox entry (the task, with the secret values) and the queue entry
    /// removed. Returns `false` when another writer changed one of them first; the job is then
    /// left for the next pass.
    async fn assign(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        (jk, mut job, jv): (Key, Job, Version),
        agent: &Agent,
        p: &Entry,
    ) -> Result<bool> {
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
            output_stored_bytes: 0,
            registration: agent.registration.as_ref().map(|r| r.id.clone()),
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
            registration: agent.registration.as_ref().map(|r| r.id.clone()),
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
            Ok(_) => Ok(true),
            Err(StoreError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}
