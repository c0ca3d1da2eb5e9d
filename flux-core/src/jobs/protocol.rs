//! The agent protocol: register, heartbeat, poll for tasks, and report start, output and the
//! result of an attempt. An agent only ever sees and reports its own attempts: another agent's
//! attempt answers NotFound, and one taken away from it answers Gone.
//!
//! Registrations: registering gives the agent process a random session secret (only its
//! SHA-256 is stored, in the agent record) which it presents on every later call. A node is
//! held by one registration at a time: another registration for it (a second agent token for
//! the same node, say) is refused while the holder is alive, and accepted once it is dead
//! ([`super::admit_registration`]). Attempts are given to the registration, so only its holder
//! sees their tasks (with the secret values), starts them and reports their output and result.

use std::borrow::Cow;

use sha2::{Digest, Sha256};

use super::{
    CAS_RETRIES, JobError, Jobs, Result, check_running, dec, enc, forget_secrets, is_conflict,
    put_job, record_start,
};
use crate::keys;
use crate::model::{
    Agent, AgentState, Attempt, AttemptResult, AttemptState, Heartbeat, HeartbeatReply, Job,
    JobStatus, Millis, Outcome, OutputChunk, RegisterAgent, ResultReport, StoredChunk, Task,
    json_prefix_within, parse_attempt_id, stored_chunk_cost, valid_attempt_id, valid_ident,
    validate_facts, validate_register,
};
use crate::store::{Expect, Key, Txn, Version};

/// Who makes an agent-protocol call: the node id of its agent token and the session secret it
/// presented (header `X-Flux-Session`), if any.
#[derive(Clone, Copy)]
pub struct AgentCaller<'a> {
    pub node_id: &'a str,
    presented: Presented<'a>,
    /// The agent's record as this same call's session check read it, moments before: the
    /// call's first read of the record is that one ([`AgentCaller::checked`]).
    checked: Option<&'a Agent>,
}

#[derive(Clone, Copy)]
enum Presented<'a> {
    Secret(Option<&'a str>),
    /// An in-process caller (tests) that plays whichever registration holds the node.
    #[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
    Holder,
}

impl std::fmt::Debug for AgentCaller<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let session = match self.presented {
            Presented::Secret(Some(_)) => "presented",
            Presented::Secret(None) => "none",
            Presented::Holder => "holder",
        };
        f.debug_struct("AgentCaller")
            .field("node_id", &self.node_id)
            .field("session", &session)
            .finish()
    }
}

impl<'a> AgentCaller<'a> {
    /// A call made with an agent token for `node_id` that presented `session`.
    pub fn new(node_id: &'a str, session: Option<&'a str>) -> AgentCaller<'a> {
        AgentCaller {
            node_id,
            presented: Presented::Secret(session),
            checked: None,
        }
    }

    /// An in-process caller that stands for the node's current registration, whatever it is
    /// (tests drive the service without keeping secrets). Attempts stay bound to registrations.
    #[cfg(any(test, feature = "testing"))]
    pub fn holder(node_id: &'a str) -> AgentCaller<'a> {
        AgentCaller {
            node_id,
            presented: Presented::Holder,
            checked: None,
        }
    }

    /// The same call, with the agent's record that its session check ([`Jobs::check_session`])
    /// read: the call's first read of the record is that one instead of another read of the
    /// store (later reads, after a conflict or a wait, read afresh). Only for a call that does
    /// nothing between the check and its use (no body to read first: a task poll, an attempt's
    /// start), so that the record is as fresh as one the call would read itself; a record of
    /// another node, or (where it is used) of another tenant, is not used.
    pub fn checked(self, agent: Option<&'a Agent>) -> AgentCaller<'a> {
        AgentCaller {
            checked: agent.filter(|a| a.node_id == self.node_id),
            ..self
        }
    }

    /// Whether this caller holds `agent`'s current registration.
    pub(super) fn holds(&self, agent: &Agent) -> bool {
        match (self.presented, &agent.registration) {
            (Presented::Holder, _) => true,
            (Presented::Secret(Some(s)), Some(r)) => {
                !r.secret_sha256.is_empty() && session_sha256(s) == r.secret_sha256
            }
            _ => false,
        }
    }

    /// The id of `agent`'s current registration if this caller holds it.
    pub(super) fn registration_of(&self, agent: &Agent) -> Result<String> {
        if self.holds(agent) {
            return Ok(agent
                .registration
                .as_ref()
                .map(|r| r.id.clone())
                .unwrap_or_default());
        }
        let why = match self.presented {
            Presented::Secret(None) => "no session was presented",
            _ => "the session presented is not the current one",
        };
        Err(JobError::Session(format!(
            "agent {} is held by another registration ({why}): register again and present the \
             session it returns in the X-Flux-Session header",
            self.node_id
        )))
    }
}

#[cfg(any(test, feature = "testing"))]
impl<'a> From<&'a str> for AgentCaller<'a> {
    fn from(node_id: &'a str) -> AgentCaller<'a> {
        AgentCaller::holder(node_id)
    }
}

#[cfg(any(test, feature = "testing"))]
impl<'a> From<&'a String> for AgentCaller<'a> {
    fn from(node_id: &'a String) -> AgentCaller<'a> {
        AgentCaller::holder(node_id)
    }
}

/// The error of an attempt whose record kept changing under a read-modify-write.
fn contended(attempt_id: &str) -> JobError {
    JobError::Conflict(format!("attempt {attempt_id} is contended; retry"))
}

/// Takes the next output chunk (`chunk.seq == a.output_seq`) into the attempt's counters under
/// the output cap, which applies to what the chunks take in the store (key and record
/// included); past it, bytes are counted as dropped instead of stored. Returns the chunk's path
/// and record to write, if any of its bytes are kept.
fn take_chunk(
    cap: u64,
    attempt_id: &str,
    a: &mut Attempt,
    chunk: &OutputChunk,
) -> Option<(String, StoredChunk)> {
    debug_assert_eq!(chunk.seq, a.output_seq);
    let path = keys::output_chunk(attempt_id, chunk.seq);
    let mut stored = StoredChunk {
        seq: chunk.seq,
        stream: chunk.stream,
        data: String::new(),
    };
    let overhead = stored_chunk_cost(&path, &stored);
    let room = cap.saturating_sub(a.output_stored_bytes);
    let keep = match room.checked_sub(overhead) {
        Some(budget) => json_prefix_within(&chunk.data, budget).0,
        None => 0,
    };
    a.output_seq += 1;
    a.output_bytes += keep as u64;
    a.output_dropped += (chunk.data.len() - keep) as u64;
    if keep == 0 {
        return None;
    }
    stored.data = chunk.data[..keep].to_string();
    a.output_stored_bytes += stored_chunk_cost(&path, &stored);
    Some((path, stored))
}

/// The output carried with a result: at most [`ResultReport::MAX_CHUNKS`] chunks, numbered one after
/// the other.
fn check_result_output(output: &[OutputChunk]) -> Result<()> {
    if output.len() > ResultReport::MAX_CHUNKS {
        return Err(JobError::Invalid(format!(
            "output: a result carries at most {} output chunks, not {}",
            ResultReport::MAX_CHUNKS,
            output.len()
        )));
    }
    if let Some(w) = output
        .windows(2)
        .find(|w| w[1].seq != w[0].seq.wrapping_add(1))
    {
        return Err(JobError::Invalid(format!(
            "output: chunk {} follows chunk {}; the chunks carried with a result are numbered \
             one after the other",
            w[1].seq, w[0].seq
        )));
    }
    Ok(())
}

/// Takes the chunks of `output` the attempt has not recorded yet (a chunk below its next
/// sequence number was stored before, by the output endpoint or an earlier try of the same
/// call, and is skipped); returns the records to write. A chunk beyond the next expected one
/// is refused like on the output endpoint.
fn take_result_output(
    cap: u64,
    attempt_id: &str,
    a: &mut Attempt,
    output: &[OutputChunk],
) -> Result<Vec<(String, StoredChunk)>> {
    let mut puts = Vec::new();
    for chunk in output {
        if chunk.seq < a.output_seq {
            continue;
        }
        if chunk.seq > a.output_seq {
            return Err(JobError::Conflict(format!(
                "output chunk {} arrived but chunk {} is expected next",
                chunk.seq, a.output_seq
            )));
        }
        puts.extend(take_chunk(cap, attempt_id, a, chunk));
    }
    Ok(puts)
}

/// Hex SHA-256 of a session secret, as the agent record keeps it.
fn session_sha256(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new session secret (256 random bits, hex) and its hash.
pub(super) fn new_session() -> (String, String) {
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let hash = session_sha256(&secret);
    (secret, hash)
}

impl Jobs {
    /// Whether `caller` holds the current registration of its node in `tenant`: checked before
    /// an agent call's body is read, so that a copy of the token without the session cannot
    /// hold the agent pools' permits (and starve the real agent's heartbeats).
    pub async fn check_session<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
    ) -> Result<Agent> {
        let caller = caller.into();
        let agent = self.agent(tenant, caller.node_id).await?;
        caller.registration_of(&agent)?;
        Ok(agent)
    }

    pub async fn register<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        req: &RegisterAgent,
        now: Millis,
    ) -> Result<HeartbeatReply> {
        let caller = caller.into();
        let node_id = caller.node_id;
        if !valid_ident(node_id) {
            return Err(JobError::Invalid(format!(
                "node id {node_id:?} is not valid"
            )));
        }
        validate_register(req).map_err(JobError::Invalid)?;
        let (registration, session) = self.register_agent(tenant, &caller, now, req).await?;
        self.requeue_lost(tenant, node_id, &registration, &req.running, now)
            .await?;
        Ok(HeartbeatReply {
            cancel: self
                .stale_attempts(tenant, node_id, &registration, &req.running)
                .await?,
            heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u64,
            session,
        })
    }

    /// The agent is alive and runs `hb.running`. Not a durable write (unless the store shows the
    /// agent unreachable or dead): this node notes it and publishes it with its liveness record.
    pub async fn heartbeat<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        hb: &Heartbeat,
        now: Millis,
    ) -> Result<HeartbeatReply> {
        let caller = caller.into();
        check_running(&hb.running)?;
        if let Some(f) = &hb.facts {
            validate_facts(f).map_err(JobError::Invalid)?;
        }
        let registration = self
            .heartbeat_agent(tenant, &caller, now, hb.facts.as_ref())
            .await?;
        Ok(HeartbeatReply {
            cancel: self
                .stale_attempts(tenant, caller.node_id, &registration, &hb.running)
                .await?,
            heartbeat_interval_ms: self.cfg.heartbeat_interval.as_millis() as u64,
            session: None,
        })
    }

    /// Inbox entries of an agent newer than `after` (a store revision) given to the caller's
    /// registration. Only the holder of the node's current registration may poll: the tasks
    /// carry the jobs' secret values.
    pub async fn poll<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        after: u64,
    ) -> Result<Vec<Task>> {
        self.poll_heard(tenant, caller, after, None).await
    }

    /// [`Jobs::poll`], and with `heard` the poll's arrival at that time is heard from the agent
    /// like a heartbeat that brings no news (no facts, no running attempts to check): noted in
    /// this node's memory, or written back online when the store shows the agent unreachable
    /// or dead. A poll proves the agent alive when it arrives, as a heartbeat does, so an idle
    /// agent whose polls come at least once per heartbeat interval need not heartbeat.
    pub async fn poll_heard<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        after: u64,
        heard: Option<Millis>,
    ) -> Result<Vec<Task>> {
        self.poll_reading(tenant, caller.into(), after, heard, true)
            .await
    }

    /// [`Jobs::poll_heard`] for a poll whose inbox is known to hold nothing written above
    /// `after` ([`super::InboxMemory::nothing_after`]): the caller is checked and its arrival
    /// heard just the same, and the inbox is not read.
    pub async fn poll_heard_nothing_new<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        after: u64,
        heard: Option<Millis>,
    ) -> Result<()> {
        self.poll_reading(tenant, caller.into(), after, heard, false)
            .await
            .map(drop)
    }

    async fn poll_reading(
        &self,
        tenant: &str,
        mut caller: AgentCaller<'_>,
        after: u64,
        heard: Option<Millis>,
        read_inbox: bool,
    ) -> Result<Vec<Task>> {
        let node_id = caller.node_id;
        if !valid_ident(node_id) {
            return Err(JobError::Invalid(format!(
                "node id {node_id:?} is not valid"
            )));
        }
        let agent = self
            .caller_record(tenant, &mut caller)
            .await?
            .ok_or_else(|| JobError::NotFound(format!("agent {node_id} (register first)")))?;
        let registration = caller.registration_of(&agent)?;
        match heard {
            Some(now) if agent.state == AgentState::Online => self.heard_from(tenant, node_id, now),
            Some(now) => {
                // Written back online like a heartbeat would; if that write fails the poll is
                // still served (its inbox may hold cancellations) and the arrival is noted, so
                // the leader's sweep brings the agent back from the published record.
                match self.heartbeat_agent(tenant, &caller, now, None).await {
                    Ok(_) => {}
                    // The registration changed or went meanwhile: not this caller's poll.
                    Err(e @ (JobError::Session(_) | JobError::NotFound(_))) => return Err(e),
                    Err(e) => {
                        tracing::warn!(tenant, node_id, error = %e, "polling agent not written back online");
                        self.heard_from(tenant, node_id, now);
                    }
                }
            }
            None => {}
        }
        if !read_inbox {
            return Ok(Vec::new());
        }
        // An inbox holds the attempts given to the agent and not yet started, and
        // cancellations: usually a few entries, read in one small range read.
        let inbox = keys::inbox(node_id);
        Ok(
            crate::stored::list_small::<Task, _>(self.store.as_ref(), tenant, &inbox, 64, dec)
                .await?
                .into_iter()
                .filter(|(t, v)| {
                    *v > after && t.registration.as_deref().is_none_or(|r| r == registration)
                })
                .map(|(mut t, v)| {
                    t.revision = v;
                    t
                })
                .collect(),
        )
    }

    /// The caller's agent record: the one its session check read ([`AgentCaller::checked`],
    /// used once and only in its own tenant), or else the store's.
    async fn caller_record<'c>(
        &self,
        tenant: &str,
        caller: &mut AgentCaller<'c>,
    ) -> Result<Option<Cow<'c, Agent>>> {
        if let Some(a) = caller.checked.take().filter(|a| a.tenant == tenant) {
            return Ok(Some(Cow::Borrowed(a)));
        }
        let k = Key::new(tenant, keys::agent(caller.node_id))?;
        Ok(self.load::<Agent>(&k).await?.map(|(a, _)| Cow::Owned(a)))
    }

    /// Loads an attempt owned by the caller: another node's attempt answers NotFound, a caller
    /// that does not hold the node's registration answers Session, and an attempt given to
    /// another (earlier) registration of the node answers Gone.
    async fn own_attempt(
        &self,
        tenant: &str,
        caller: &mut AgentCaller<'_>,
        attempt_id: &str,
    ) -> Result<(Key, Attempt, Version)> {
        let not_found = || JobError::NotFound(format!("attempt {attempt_id}"));
        if !valid_attempt_id(attempt_id) {
            return Err(not_found());
        }
        let (job_id, n) = parse_attempt_id(attempt_id).ok_or_else(not_found)?;
        let ak = Key::new(tenant, keys::attempt(job_id, n))?;
        let (a, v) = self.load::<Attempt>(&ak).await?.ok_or_else(not_found)?;
        if a.agent != caller.node_id {
            return Err(not_found());
        }
        let agent = self
            .caller_record(tenant, caller)
            .await?
            .ok_or_else(not_found)?;
        let registration = caller.registration_of(&agent)?;
        if a.registration.as_deref().is_some_and(|r| r != registration) {
            return Err(JobError::Gone(format!(
                "attempt {attempt_id} was given to an earlier registration of agent {}",
                caller.node_id
            )));
        }
        Ok((ak, a, v))
    }

    /// The agent started the attempt.
    pub async fn start<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        attempt_id: &str,
        now: Millis,
    ) -> Result<()> {
        let mut caller = caller.into();
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, &mut caller, attempt_id).await?;
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
            let jk = Key::new(tenant, keys::job(&a.job_id))?;
            let mut txn = Txn::new().put(ak, enc(&a), Expect::Version(av));
            if let Some((mut job, jv)) = self.load::<Job>(&jk).await?
                && job.current_attempt.as_deref() == Some(attempt_id)
                && job.status == JobStatus::Assigned
            {
                let old = job.clone();
                job.status = JobStatus::Running;
                job.started_at.get_or_insert(now);
                job.updated_at = now;
                txn = put_job(txn, tenant, Some(&old), &job, Expect::Version(jv))?;
            }
            if self.committed(txn).await? {
                return Ok(());
            }
        }
        Err(contended(attempt_id))
    }

    /// Appends one output chunk. Chunks must arrive in sequence; a repeated chunk is accepted
    /// and ignored. The cap applies to what the chunks take in the store (key and record
    /// included, so a flood of tiny chunks cannot store more than the cap); past it, bytes are
    /// counted as dropped instead of stored ([`take_chunk`]).
    pub async fn append_output<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        attempt_id: &str,
        chunk: OutputChunk,
    ) -> Result<()> {
        let mut caller = caller.into();
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, &mut caller, attempt_id).await?;
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
            let stored = take_chunk(self.cfg.output_cap_bytes, attempt_id, &mut a, &chunk);
            let mut txn = Txn::new().put(ak, enc(&a), Expect::Version(av));
            if let Some((path, stored)) = stored {
                txn = txn.put(Key::new(tenant, path)?, enc(&stored), Expect::Any);
            }
            if self.committed(txn).await? {
                return Ok(());
            }
        }
        Err(contended(attempt_id))
    }

    /// Records an attempt's result once. Returns `true` if this call recorded it, `false` for a
    /// repeat (or for an attempt that was taken away, whose result no longer decides the job).
    pub async fn finish<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        attempt_id: &str,
        result: AttemptResult,
        now: Millis,
    ) -> Result<bool> {
        self.finish_with_output(tenant, caller, attempt_id, result, &[], None, now)
            .await
            .map(|r| r.recorded())
    }

    /// Records an attempt's result once, with the last of its output: the chunks, the attempt,
    /// the job and the inbox entry change in one transaction, so the output is stored exactly
    /// when the result is. Chunks the attempt already has (an earlier upload of the same
    /// `seq`) are skipped; the output cap applies as on [`Jobs::append_output`]. A repeated
    /// result stores nothing, and neither does a result for an attempt that was taken away.
    /// An attempt whose start was not reported (a run shorter than the agent's start delay)
    /// starts `ran_ms` before `now` (not before its assignment), in the same transaction,
    /// with its `job.started` event before the `job.finished` one. Returns whether this call
    /// recorded the result, as [`Jobs::finish`], and the job it ended.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_with_output<'a>(
        &self,
        tenant: &str,
        caller: impl Into<AgentCaller<'a>>,
        attempt_id: &str,
        result: AttemptResult,
        output: &[OutputChunk],
        ran_ms: Option<u64>,
        now: Millis,
    ) -> Result<Recorded> {
        let mut caller = caller.into();
        let node_id = caller.node_id;
        if let Some(m) = &result.message
            && m.len() > 4096
        {
            return Err(JobError::Invalid(
                "message: a result message is at most 4096 bytes".into(),
            ));
        }
        check_result_output(output)?;
        let cap = self.cfg.output_cap_bytes;
        for _ in 0..CAS_RETRIES {
            let (ak, mut a, av) = self.own_attempt(tenant, &mut caller, attempt_id).await?;
            if matches!(a.state, AttemptState::Finished | AttemptState::Abandoned) {
                return Ok(Recorded::Nothing);
            }
            let seq_before = a.output_seq;
            let chunks = take_result_output(cap, attempt_id, &mut a, output)?;
            let inbox = Key::new(tenant, keys::inbox_entry(node_id, attempt_id))?;
            if result.outcome == Outcome::Cancelled {
                let cancel_requested = self
                    .load::<Job>(&Key::new(tenant, keys::job(&a.job_id))?)
                    .await?
                    .is_some_and(|(j, _)| j.cancel_requested);
                if !cancel_requested {
                    if a.output_seq != seq_before {
                        // The output the interrupted run produced is kept, as uploaded on its
                        // own; the requeue follows on the next round.
                        let mut txn = Txn::new().put(ak, enc(&a), Expect::Version(av));
                        for (path, stored) in chunks {
                            txn = txn.put(Key::new(tenant, path)?, enc(&stored), Expect::Any);
                        }
                        self.committed(txn).await?;
                        continue;
                    }
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
                        // Out of attempts, or cancelled meanwhile: the requeue ended the job.
                        Ok(super::liveness::Abandoned::Ended(job)) => {
                            Ok(Recorded::Result { ended: Some(job) })
                        }
                        Ok(_) => Ok(Recorded::Result { ended: None }),
                        Err(e) if is_conflict(&e) => continue,
                        Err(e) => Err(e),
                    };
                }
            }
            let started = ran_ms.map_or(now, |r| now.saturating_sub(r).max(a.assigned_at));
            a.state = AttemptState::Finished;
            a.started_at.get_or_insert(started);
            a.finished_at = Some(now);
            a.result = Some(result.clone());
            let jk = Key::new(tenant, keys::job(&a.job_id))?;
            let mut txn = Txn::new()
                .put(ak, enc(&a), Expect::Version(av))
                .delete(inbox, Expect::Any);
            for (path, stored) in chunks {
                txn = txn.put(Key::new(tenant, path)?, enc(&stored), Expect::Any);
            }
            let mut ended = None;
            if let Some((mut job, jv)) = self.load::<Job>(&jk).await?
                && job.current_attempt.as_deref() == Some(attempt_id)
                && !job.status.is_terminal()
            {
                let old = job.clone();
                if old.status == JobStatus::Assigned {
                    txn = record_start(txn, tenant, &old, started)?;
                }
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
                job.started_at.get_or_insert(started);
                job.finished_at = Some(now);
                job.updated_at = now;
                txn = put_job(txn, tenant, Some(&old), &job, Expect::Version(jv))?;
                txn = forget_secrets(txn, tenant, &job)?;
                ended = Some(Box::new(job));
            }
            if self.committed(txn).await? {
                return Ok(Recorded::Result { ended });
            }
        }
        Err(contended(attempt_id))
    }
}

/// What [`Jobs::finish_with_output`] did with a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// Nothing: a repeated result, or one for an attempt that was taken away.
    Nothing,
    /// The result, and the job as the same transaction ended it (none when the job went back
    /// to the queue, or had gone on without the attempt).
    Result { ended: Option<Box<Job>> },
}

impl Recorded {
    /// Whether the result was recorded.
    pub fn recorded(&self) -> bool {
        matches!(self, Recorded::Result { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checked_record_serves_only_a_call_of_its_own_node() {
        let own = super::super::liveness::tests::agent(AgentState::Online, 0, true);
        let other = Agent {
            node_id: format!("{}-2", own.node_id),
            ..own.clone()
        };
        let call = AgentCaller::new(&own.node_id, Some("s"));
        assert!(call.checked.is_none());
        let call = call.checked(Some(&own));
        assert_eq!(call.checked, Some(&own));
        assert!(call.checked(Some(&other)).checked.is_none());
        assert!(call.checked(None).checked.is_none());
    }
}
