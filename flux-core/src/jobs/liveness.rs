//! The leader's liveness work: agents that fall silent become unreachable, then dead; the
//! attempts of dead agents, and attempts not started by their deadline, are abandoned and their
//! jobs requeued (or failed when out of attempts). An agent that comes back is online again, and
//! what it still runs is checked against what it should.
//!
//! Sweeps run on the leader only and carry its fencing epoch; [`Jobs::requeue`] is also used by
//! the agent protocol (an agent that restarted, or stopped a task itself).

use std::collections::HashMap;
use std::time::Duration;

use super::protocol::{AgentCaller, new_session};
use super::{CAS_RETRIES, JobError, Jobs, Result, dec, enc, forget_secrets, is_conflict, key};
use crate::keys;
use crate::model::{
    Agent, AgentState, Attempt, AttemptState, Job, JobStatus, Millis, Pending, RegisterAgent,
    Registration, Task, parse_attempt_id, valid_ident,
};
use crate::store::{Epoch, Expect, Key, StoreError, Txn, Version};

/// What a registration does to the node's record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new registration holds the node from now on (with a new session secret).
    New,
    /// The caller already holds the node's registration (an agent re-registering after a
    /// reconnect, or after its own restart with its session kept in its state directory).
    Resume,
}

/// Whether a registration for a node is admitted. `existing` is the node's record, if any;
/// `holds_current` says whether the caller presented the session of its current
/// registration. Another registration is refused while the current holder is alive: it is
/// only taken over once the holder is dead (marked dead, or silent for `dead_after`).
pub fn admit_registration(
    existing: Option<&Agent>,
    holds_current: bool,
    now: Millis,
    dead_after: Duration,
) -> Result<Admission, String> {
    let Some(agent) = existing.filter(|a| a.registration.is_some()) else {
        return Ok(Admission::New);
    };
    if holds_current {
        return Ok(Admission::Resume);
    }
    let silent = now.saturating_sub(agent.last_seen);
    let dead_ms = dead_after.as_millis() as u64;
    if agent.state == AgentState::Dead || silent >= dead_ms {
        return Ok(Admission::New);
    }
    Err(format!(
        "agent {} is held by a live registration (last heard {silent} ms ago): another agent \
         process may register it only once that one is dead ({} ms without a heartbeat)",
        agent.node_id, dead_ms
    ))
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
    pub(super) async fn requeue(
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

    /// Records that the caller's agent was heard from now, checking its session: a heartbeat
    /// must come from the holder of the node's registration, a registration must be admitted
    /// ([`admit_registration`]). Returns the id of the registration that holds the node and,
    /// for a new registration, its session secret.
    pub(super) async fn touch_agent(
        &self,
        tenant: &str,
        caller: &AgentCaller<'_>,
        now: Millis,
        register: Option<&RegisterAgent>,
    ) -> Result<(String, Option<String>)> {
        let node_id = caller.node_id;
        let ak = key(tenant, keys::agent(node_id))?;
        for _ in 0..CAS_RETRIES {
            let found = self.load::<Agent>(&ak).await?;
            let mut secret = None;
            let mut fresh = |a: &mut Agent| {
                let (s, hash) = new_session();
                secret = Some(s);
                a.registration = Some(Registration {
                    id: uuid::Uuid::new_v4().simple().to_string(),
                    secret_sha256: hash,
                });
                a.registered_at = now;
            };
            let (agent, expect) = match (found, register) {
                (Some((mut a, v)), reg) => {
                    match reg {
                        Some(r) => {
                            let admission = admit_registration(
                                Some(&a),
                                caller.holds(&a),
                                now,
                                self.cfg.dead_after,
                            )
                            .map_err(JobError::Session)?;
                            if admission == Admission::New {
                                tracing::info!(tenant, node_id, "new registration of the agent");
                                fresh(&mut a);
                            }
                            a.labels = r.labels.clone();
                            a.slots = r.slots.unwrap_or(a.slots).max(1);
                            a.hostname = r.hostname.clone();
                            a.version = r.version.clone();
                        }
                        None => {
                            caller.registration_of(&a)?;
                        }
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
                (None, Some(r)) => {
                    let mut a = Agent {
                        node_id: node_id.to_string(),
                        tenant: tenant.to_string(),
                        labels: r.labels.clone(),
                        slots: r.slots.unwrap_or(4).max(1),
                        state: AgentState::Online,
                        registered_at: now,
                        last_seen: now,
                        hostname: r.hostname.clone(),
                        version: r.version.clone(),
                        registration: None,
                    };
                    fresh(&mut a);
                    (a, Expect::Absent)
                }
                (None, None) => {
                    return Err(JobError::NotFound(format!(
                        "agent {node_id} (register first)"
                    )));
                }
            };
            match self.store.put(ak.clone(), enc(&agent), expect).await {
                Ok(_) => {
                    let id = agent.registration.map(|r| r.id).unwrap_or_default();
                    return Ok((id, secret));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(JobError::Conflict(format!(
            "agent {node_id} record is contended; retry"
        )))
    }

    /// Attempts among `running` that this agent must stop: not (or no longer) its own or its
    /// registration's, taken away, finished, or whose job was cancelled.
    pub(super) async fn stale_attempts(
        &self,
        tenant: &str,
        node_id: &str,
        registration: &str,
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
                                && a.registration.as_deref().is_none_or(|r| r == registration)
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
    /// of being started a second time from the inbox. So does every attempt given to an
    /// earlier registration of the node (a new agent process took the node over).
    pub(super) async fn requeue_lost(
        &self,
        tenant: &str,
        node_id: &str,
        registration: &str,
        running: &[String],
        now: Millis,
    ) -> Result<()> {
        for entry in self.store.list(tenant, &keys::inbox(node_id)).await? {
            let task: Task = dec(&entry.key, &entry.value)?;
            let mine = task
                .registration
                .as_deref()
                .is_none_or(|r| r == registration);
            if mine && running.contains(&task.attempt_id) {
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
            let live = matches!(
                attempt.state,
                AttemptState::Assigned | AttemptState::Running
            );
            if attempt.agent != node_id
                || (mine && attempt.state != AttemptState::Running)
                || (!mine && !live)
            {
                continue;
            }
            let reason = if mine {
                "the agent restarted without it"
            } else {
                "another agent process registered the node"
            };
            match self
                .requeue(tenant, None, now, attempt, atv, entry.key.clone(), reason)
                .await
            {
                Ok(_) => {}
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn agent(state: AgentState, last_seen: Millis, registered: bool) -> Agent {
        Agent {
            node_id: "web-1".into(),
            tenant: "t".into(),
            labels: BTreeMap::new(),
            slots: 1,
            state,
            registered_at: 0,
            last_seen,
            hostname: None,
            version: None,
            registration: registered.then(|| Registration {
                id: "r1".into(),
                secret_sha256: "00".repeat(32),
            }),
        }
    }

    #[test]
    fn a_live_registration_is_only_resumed_by_its_holder_and_taken_over_once_dead() {
        let dead_after = Duration::from_secs(15);
        let now = 100_000;
        // Nothing holds the node: a new registration.
        assert_eq!(
            admit_registration(None, false, now, dead_after),
            Ok(Admission::New)
        );
        let legacy = agent(AgentState::Online, now, false);
        assert_eq!(
            admit_registration(Some(&legacy), false, now, dead_after),
            Ok(Admission::New)
        );
        // Alive (online or merely unreachable): the holder resumes, anyone else is refused.
        for state in [AgentState::Online, AgentState::Unreachable] {
            let live = agent(state, now - 14_999, true);
            assert_eq!(
                admit_registration(Some(&live), true, now, dead_after),
                Ok(Admission::Resume)
            );
            let e = admit_registration(Some(&live), false, now, dead_after).unwrap_err();
            assert!(
                e.contains("web-1") && e.contains("live registration"),
                "{e}"
            );
        }
        // Dead (marked, or silent for dead_after before a sweep marked it): taken over.
        let silent = agent(AgentState::Online, now - 15_000, true);
        assert_eq!(
            admit_registration(Some(&silent), false, now, dead_after),
            Ok(Admission::New)
        );
        let dead = agent(AgentState::Dead, now, true);
        assert_eq!(
            admit_registration(Some(&dead), false, now, dead_after),
            Ok(Admission::New)
        );
        // Its holder coming back resumes it even then.
        assert_eq!(
            admit_registration(Some(&dead), true, now, dead_after),
            Ok(Admission::Resume)
        );
    }
}
