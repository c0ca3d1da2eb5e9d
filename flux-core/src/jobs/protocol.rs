//! The agent protocol: register, heartbeat, poll for tasks, and report start, output and the
//! result of an attempt. An agent only ever sees and reports its own attempts: another agent's
//! attempt answers NotFound, and one taken away from it answers Gone.

use super::{
    CAS_RETRIES, JobError, Jobs, Result, check_running, enc, forget_secrets, is_conflict, key,
};
use crate::keys;
use crate::model::{
    Attempt, AttemptResult, AttemptState, Heartbeat, HeartbeatReply, Job, JobStatus, Millis,
    Outcome, OutputChunk, RegisterAgent, StoredChunk, Task, parse_attempt_id, valid_ident,
};
use crate::store::{Expect, Key, StoreError, Txn, Version};

impl Jobs {
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
}
