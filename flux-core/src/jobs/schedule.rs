//! The leader's scheduling driver: reads a tenant's queue, agents and inboxes, asks
//! the placement rules where each job goes, and commits each assignment as one fenced
//! transaction (job, attempt, inbox entry, queue entry removed) with CAS on every object.

use std::collections::{BTreeMap, HashMap};

use super::{Jobs, MAX_SCAN_PER_PASS, Result, enc, key};
use crate::keys;
use crate::model::{
    Agent, AgentState, Attempt, AttemptState, Job, JobStatus, Millis, Pending, Task, attempt_id,
    labels_match,
};
use crate::store::{Epoch, Expect, StoreError, Txn};

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
}
