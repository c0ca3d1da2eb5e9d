//! The leader's liveness work: agents that fall silent become unreachable, then dead; the
//! attempts of dead agents, and attempts not started by their deadline, are abandoned and their
//! jobs requeued (or failed when out of attempts). An agent that comes back is online again, and
//! what it still runs is checked against what it should.
//!
//! Sweeps run on the leader only and carry its fencing epoch; [`Jobs::requeue`] is also used by
//! the agent protocol (an agent that restarted, or stopped a task itself).
//!
//! Hearing from an agent is not a durable write. Each node keeps in memory when it last heard
//! from the agents that talk to it ([`Seen`]) and publishes that, per tenant, as one small record
//! (`liveness/<node>`, a [`SeenRecord`]) per interval ([`Jobs::publish_liveness`]): writes grow
//! with the nodes, not with the agents. The leader's sweep reads those records, its own memory
//! and the agent records, and decides each agent's transition with the pure [`judge`]; only
//! transitions (online, unreachable, dead, back online), registrations and label or slot changes
//! are written, the sweep's transitions as one batch, each fenced by the leader's epoch.
//!
//! Guarantees:
//! - a new leader judges no agent on silence from before its election (`grace_from`);
//! - a record that stopped changing (its node died, or its clock runs ahead) keeps no agent
//!   alive: it is ignored once it is older than `dead_after`, by its publishing time and by
//!   how long this node has seen it unchanged;
//! - a heartbeat from an agent the store shows unreachable or dead brings it back online at once
//!   (a durable write on the node that hears it); the leader's sweep does it too when the only
//!   evidence is a published record.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::protocol::{AgentCaller, new_session};
use super::sweep_memo::{MemoBasis, Silence};
use super::{
    CAS_RETRIES, JobError, Jobs, Result, agent_contended, dec, enc, forget_secrets, is_conflict,
    put_job,
};
use crate::keys;
use crate::model::{
    Agent, AgentState, Attempt, AttemptState, Facts, Job, JobStatus, Millis, Pending,
    RegisterAgent, Registration, Task, parse_attempt_id, valid_ident,
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

/// The liveness transition the leader makes for an agent in `state`, last heard from at `heard`
/// (the freshest evidence known), at `now`; `None` when it stays as it is. Pure.
///
/// Silence moves an agent down only (online → unreachable → dead) and is counted from no earlier
/// than `grace_from` (the leader's election). Coming back needs real evidence: an unreachable or
/// dead agent heard from within `unreachable_after` is online again; a grace never revives one.
pub fn judge(
    state: AgentState,
    heard: Millis,
    now: Millis,
    grace_from: Millis,
    unreachable_after: Duration,
    dead_after: Duration,
) -> Option<AgentState> {
    let unreachable_ms = unreachable_after.as_millis() as u64;
    let dead_ms = dead_after.as_millis() as u64;
    if state != AgentState::Online && now.saturating_sub(heard) < unreachable_ms {
        return Some(AgentState::Online);
    }
    let silent = now.saturating_sub(heard.max(grace_from));
    let next = if silent >= dead_ms {
        AgentState::Dead
    } else if silent >= unreachable_ms {
        AgentState::Unreachable
    } else {
        return None;
    };
    match (state, next) {
        (AgentState::Online, n) => Some(n),
        (AgentState::Unreachable, AgentState::Dead) => Some(AgentState::Dead),
        _ => None,
    }
}

/// What one node heard of a tenant's agents, as it publishes it (`liveness/<node>`): when it
/// last heard from each, by its own clock, and when and in which order it published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRecord {
    pub node: String,
    /// Grows with every publication of the node process (with `published_at`, tells a record
    /// that is still refreshed from one that stopped).
    pub seq: u64,
    pub published_at: Millis,
    pub agents: BTreeMap<String, Millis>,
}

/// A [`SeenRecord`] as a node encodes it, from its memory as it is (not copied into the
/// record's map first: at 100,000 agents the copy cost more than the encoding).
#[derive(Serialize)]
struct Publishing<'a> {
    node: &'a str,
    seq: u64,
    published_at: Millis,
    agents: &'a HashMap<String, Millis>,
}

/// What [`Jobs::requeue`] did with the abandoned attempt's job.
#[derive(Debug)]
pub(super) enum Abandoned {
    /// Back in the queue for another attempt.
    Requeued,
    /// Ended by the abandonment: out of attempts (failed), or cancelled while a cancel was
    /// pending; the job as written.
    Ended(Box<Job>),
    /// Left as it was: the job had gone on without the attempt.
    Left,
}

/// This node's memory of its agents: when it last heard from each (by tenant), and what it has
/// seen of the other nodes' records.
#[derive(Debug, Default)]
pub(super) struct Seen {
    local: Mutex<HashMap<String, TenantSeen>>,
    seq: AtomicU64,
    /// The other nodes' records as this node last saw them, by `(tenant, node)`.
    records: Mutex<HashMap<(String, String), RecordSeen>>,
}

/// A node's record as this node last saw it: its `(seq, published_at)`, and since when (by this
/// node's clock) it has been so.
#[derive(Debug)]
struct RecordSeen {
    id: (u64, Millis),
    since: Millis,
}

#[derive(Debug, Default)]
struct TenantSeen {
    agents: HashMap<String, Millis>,
    /// Heard from some agent since the last publication.
    dirty: bool,
    /// A record of this node is in the store.
    published: bool,
    /// This node's record as it last wrote it: its key and the version the store gave it.
    /// While the store holds that version, this memory holds all the record does (and news).
    written: Option<(Key, Version)>,
}

impl Seen {
    fn note(&self, tenant: &str, agent: &str, now: Millis) {
        let mut local = self.local.lock().expect("liveness memory");
        let t = local.entry(tenant.to_string()).or_default();
        let at = t.agents.entry(agent.to_string()).or_insert(now);
        *at = (*at).max(now);
        t.dirty = true;
    }

    /// Whether `entry` is this node's own record as it last wrote it (nothing in it that this
    /// memory does not hold).
    fn is_own(&self, tenant: &str, entry: &crate::store::Entry) -> bool {
        let local = self.local.lock().expect("liveness memory");
        local
            .get(tenant)
            .and_then(|t| t.written.as_ref())
            .is_some_and(|(k, v)| *k == entry.key && *v == entry.version)
    }

    /// Whether `rec` (in `tenant`) still counts at `now`: published within `dead_after`, and,
    /// when `track`, not seen unchanged by this node for `dead_after` either.
    fn counts(
        &self,
        tenant: &str,
        rec: &SeenRecord,
        now: Millis,
        dead_ms: u64,
        track: bool,
    ) -> bool {
        if now.saturating_sub(rec.published_at) >= dead_ms {
            return false;
        }
        if !track {
            return true;
        }
        let mut records = self.records.lock().expect("liveness records");
        let id = (rec.seq, rec.published_at);
        let seen = records
            .entry((tenant.to_string(), rec.node.clone()))
            .or_insert(RecordSeen { id, since: now });
        if seen.id != id || now < seen.since {
            *seen = RecordSeen { id, since: now };
        }
        now.saturating_sub(seen.since) < dead_ms
    }
}

/// When a tenant's agents were last heard from, as far as a node knows ([`Jobs::heard`]): the
/// records of the nodes that still count, merged, and the node's own memory, read in place at
/// each lookup or scan (not copied: at 100,000 agents a copy per sweep cost more than the rest
/// of the sweep).
pub(super) struct Heard<'a> {
    records: HashMap<String, Millis>,
    /// The records that counted, as `(node, seq, published_at)`, in key order.
    sources: Vec<(String, u64, Millis)>,
    seen: &'a Seen,
    tenant: &'a str,
    now: Millis,
}

impl Heard<'_> {
    /// The freshest time `agent` was heard from (at most `now`), if ever.
    pub(super) fn get(&self, agent: &str) -> Option<Millis> {
        self.scan(|heard_at| heard_at(agent))
    }

    /// Runs `f` with the lookup of [`Heard::get`], holding this node's memory once for all of
    /// `f` (a pass over the fleet takes one lock, not one per agent); `f` must not block, nor
    /// call [`Heard::get`] (the lock is not re-entrant).
    pub(super) fn scan<R>(&self, f: impl FnOnce(&dyn Fn(&str) -> Option<Millis>) -> R) -> R {
        let local = self.seen.local.lock().expect("liveness memory");
        let mine = local.get(self.tenant).map(|t| &t.agents);
        let heard_at = |agent: &str| {
            mine.and_then(|m| m.get(agent).copied())
                .max(self.records.get(agent).copied())
                .map(|at| at.min(self.now))
        };
        f(&heard_at)
    }
}

/// What a sweep did, for metrics and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    pub marked_unreachable: usize,
    pub marked_dead: usize,
    /// Unreachable or dead agents the sweep found heard from again.
    pub marked_online: usize,
    pub requeued: usize,
    pub failed: usize,
}

/// What the sweep takes an agent to be: a revoked agent is dead whatever its state says.
fn swept_state(a: &Agent) -> AgentState {
    if a.revoked_at.is_some() {
        AgentState::Dead
    } else {
        a.state
    }
}

/// Logs an agent about to be written back online from another state.
fn log_back_online(tenant: &str, node_id: &str, a: &Agent) {
    if a.state != AgentState::Online {
        tracing::info!(
            tenant,
            node_id,
            from = a.state.as_str(),
            "agent back online"
        );
    }
}

/// A transition the sweep decided: the agent's key, its record as marked, and the version
/// read (the write expects it).
type Mark = (Key, Agent, Version);

impl Jobs {
    /// Notes that this node heard from an agent (its session checked) at `now`.
    pub(super) fn heard_from(&self, tenant: &str, node_id: &str, now: Millis) {
        self.seen.note(tenant, node_id, now);
    }

    /// When each of `tenant`'s agents was last heard from, as far as this node knows: the
    /// records the nodes published that still count, and this node's own memory (each at most
    /// `now`). `track` (the leader's sweep) also ignores records this node has seen unchanged for
    /// `dead_after`.
    async fn heard<'a>(&'a self, tenant: &'a str, now: Millis, track: bool) -> Result<Heard<'a>> {
        let dead_ms = self.cfg.dead_after.as_millis() as u64;
        let mut heard: HashMap<String, Millis> = HashMap::new();
        let mut add = |agent: String, at: Millis| {
            let e = heard.entry(agent).or_insert(at);
            *e = (*e).max(at);
        };
        let mut sources = Vec::new();
        let entries = self.store.list(tenant, keys::LIVENESS).await?;
        if track {
            // Forget the records that are gone (their node removed them or was restored away).
            let mut records = self.seen.records.lock().expect("liveness records");
            records.retain(|(t, node), _| {
                t != tenant || entries.iter().any(|e| e.key.path() == keys::liveness(node))
            });
        }
        for entry in entries {
            if self.seen.is_own(tenant, &entry) {
                // Not decoded: this node's memory, read at each lookup, holds all of it.
                continue;
            }
            let rec: SeenRecord = match dec(&entry.key, &entry.value) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "liveness record ignored");
                    continue;
                }
            };
            if self.seen.counts(tenant, &rec, now, dead_ms, track) {
                sources.push((rec.node, rec.seq, rec.published_at));
                for (agent, at) in rec.agents {
                    add(agent, at);
                }
            }
        }
        Ok(Heard {
            records: heard,
            sources,
            seen: &self.seen,
            tenant,
            now,
        })
    }

    /// A tenant's agents with `last_seen` the freshest this node knows (the record's, or a
    /// node's published liveness record, which lags by up to one publication interval).
    pub async fn agents_seen(&self, tenant: &str) -> Result<Vec<Agent>> {
        let heard = self.heard(tenant, crate::model::now_ms(), false).await?;
        let mut agents = self.agents(tenant).await?;
        for a in &mut agents {
            if let Some(at) = heard.get(&a.node_id) {
                a.last_seen = a.last_seen.max(at);
            }
        }
        Ok(agents)
    }

    /// One agent, with `last_seen` as in [`Jobs::agents_seen`].
    pub async fn agent_seen(&self, tenant: &str, node_id: &str) -> Result<Agent> {
        let mut a = self.agent(tenant, node_id).await?;
        let heard = self.heard(tenant, crate::model::now_ms(), false).await?;
        if let Some(at) = heard.get(node_id) {
            a.last_seen = a.last_seen.max(at);
        }
        Ok(a)
    }

    /// Publishes what this node (`node`) heard of each tenant's agents since its last
    /// publication: one record per tenant (`liveness/<node>`), written only for tenants with
    /// news, removed once it has no agent heard from within `dead_after`. Unfenced: every node
    /// publishes, leader or not. Returns the records written or removed.
    pub async fn publish_liveness(&self, node: &str, now: Millis) -> Result<usize> {
        let dead_ms = self.cfg.dead_after.as_millis() as u64;
        let mut txns = Vec::new();
        let mut tenants = Vec::new();
        {
            let mut local = self.seen.local.lock().expect("liveness memory");
            local.retain(|tenant, t| {
                t.agents.retain(|_, at| now.saturating_sub(*at) < dead_ms);
                let k = match Key::new(tenant, keys::liveness(node)) {
                    Ok(k) => k,
                    Err(_) => return false,
                };
                if t.agents.is_empty() {
                    if t.published {
                        txns.push(Txn::new().delete(k, Expect::Any));
                        tenants.push((tenant.clone(), None));
                    }
                    return false;
                }
                if t.dirty {
                    let k = k.clone();
                    let rec = Publishing {
                        node,
                        seq: self.seen.seq.fetch_add(1, Ordering::Relaxed),
                        published_at: now,
                        agents: &t.agents,
                    };
                    txns.push(Txn::new().put(k.clone(), enc(&rec), Expect::Any));
                    tenants.push((tenant.clone(), Some(k)));
                    t.dirty = false;
                    t.published = true;
                }
                true
            });
        }
        let mut written = 0;
        let mut failure = None;
        for ((tenant, put), r) in tenants.into_iter().zip(self.store.commit_many(txns).await) {
            match r {
                Ok(version) => {
                    written += 1;
                    if let Some(k) = put {
                        let mut local = self.seen.local.lock().expect("liveness memory");
                        if let Some(t) = local.get_mut(&tenant) {
                            t.written = Some((k, version));
                        }
                    }
                }
                Err(e) => {
                    // Published again on the next interval.
                    if put.is_some() {
                        let mut local = self.seen.local.lock().expect("liveness memory");
                        if let Some(t) = local.get_mut(&tenant) {
                            t.dirty = true;
                        }
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(written),
        }
    }

    /// Marks silent agents unreachable or dead (and agents heard from again online) and
    /// requeues the attempts of dead agents and attempts not started by their deadline.
    /// `grace_from` is the time this leader was elected: no agent is judged on silence from
    /// before it. The transitions are one batch of fenced writes; one that conflicts (the agent
    /// registered or came back meanwhile) fails alone and the agent is taken as the store shows.
    pub async fn sweep_tenant(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        grace_from: Millis,
    ) -> Result<SweepReport> {
        let heard = self.heard(tenant, now, true).await?;
        let agents = self.list_objects::<Agent>(tenant, keys::AGENTS).await?;
        self.sweep_agents(tenant, epoch, now, grace_from, &heard, None, agents)
            .await
    }

    /// [`Self::sweep_tenant`] judged on the leader's view of the fleet (`ix`, fresh from the
    /// change stream) instead of a read of every agent record: only the agents that view shows
    /// due for a transition are read, and each is judged again on what the store holds before
    /// it is marked. The view holds what the records hold (state, `last_seen`, revocation), so
    /// the verdicts are the same as from a full read; a view that lags costs a transition one
    /// sweep later, never a wrong one (every mark is a CAS on the record read). Which agents are
    /// due is found with the view's [`SweepMemo`](super::sweep_memo::SweepMemo): most sweeps
    /// judge only the agents that are not online.
    pub async fn sweep_tenant_in(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        grace_from: Millis,
        ix: &mut super::index::TenantIndex,
    ) -> Result<SweepReport> {
        let heard = self.heard(tenant, now, true).await?;
        let (fleet, revision, memo) = ix.sweep_view();
        let basis = MemoBasis {
            fleet: revision,
            records: heard.sources.clone(),
            grace_from,
        };
        let silence = Silence {
            unreachable_after: self.cfg.unreachable_after,
            dead_after: self.cfg.dead_after,
        };
        let due = heard.scan(|heard_at| memo.due(fleet, basis, heard_at, now, silence));
        let mut agents = Vec::with_capacity(due.len());
        for node_id in &due {
            if let Some(a) = self
                .load::<Agent>(&Key::new(tenant, keys::agent(node_id))?)
                .await?
            {
                agents.push(a);
            }
        }
        let fleet = ix.fleet();
        self.sweep_agents(tenant, epoch, now, grace_from, &heard, Some(fleet), agents)
            .await
    }

    /// The sweep over `agents`: their transitions in one batch of fenced writes, then the
    /// requeues, which judge each other agent on `fleet` (the leader's view) or its record.
    #[allow(clippy::too_many_arguments)]
    async fn sweep_agents(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        grace_from: Millis,
        heard: &Heard<'_>,
        fleet: Option<&super::placement::Fleet>,
        agents: Vec<(Agent, Version)>,
    ) -> Result<SweepReport> {
        let mut report = SweepReport::default();
        let (mut states, marks) = self.transitions(tenant, now, grace_from, heard, agents)?;
        self.mark_agents(tenant, epoch, now, marks, &mut states, &mut report)
            .await?;
        self.requeue_orphans(tenant, epoch, now, fleet, &mut states, &mut report)
            .await?;
        Ok(report)
    }

    /// What this sweep read of each of `agents` (its state, for the requeues; the others are
    /// judged on the view), and the transitions it decides: each agent to write, marked, at
    /// the version read.
    fn transitions(
        &self,
        tenant: &str,
        now: Millis,
        grace_from: Millis,
        heard: &Heard<'_>,
        agents: Vec<(Agent, Version)>,
    ) -> Result<(HashMap<String, AgentState>, Vec<Mark>)> {
        let mut states: HashMap<String, AgentState> = HashMap::new();
        let mut marks: Vec<Mark> = Vec::new();
        for (agent, av) in agents {
            let last = heard
                .get(&agent.node_id)
                .map_or(agent.last_seen, |at| agent.last_seen.max(at));
            states.insert(agent.node_id.clone(), swept_state(&agent));
            if agent.revoked_at.is_some() {
                // Revoked: dead whatever was heard of it, and not revived by what was heard
                // before the revocation; its attempts are requeued below.
                continue;
            }
            if let Some(next) = judge(
                agent.state,
                last,
                now,
                grace_from,
                self.cfg.unreachable_after,
                self.cfg.dead_after,
            ) {
                let ak = Key::new(tenant, keys::agent(&agent.node_id))?;
                let marked = Agent {
                    state: next,
                    last_seen: last,
                    ..agent
                };
                marks.push((ak, marked, av));
            }
        }
        Ok((states, marks))
    }

    /// Writes the transitions `marks` as one batch of fenced writes, each with its event, and
    /// records in `states` what each agent is now (what the store says when its write lost a
    /// race). The first store failure other than a conflict is returned after the batch.
    async fn mark_agents(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        marks: Vec<Mark>,
        states: &mut HashMap<String, AgentState>,
        report: &mut SweepReport,
    ) -> Result<()> {
        let mut txns = Vec::with_capacity(marks.len());
        for (ak, marked, av) in &marks {
            let mut txn =
                Txn::new()
                    .fenced(epoch)
                    .put(ak.clone(), enc(marked), Expect::Version(*av));
            let kind = match marked.state {
                AgentState::Online => "agent.online",
                AgentState::Unreachable => "agent.unreachable",
                AgentState::Dead => "agent.dead",
            };
            crate::events::record(
                &mut txn,
                tenant,
                &crate::events::Event::of_agent(kind, marked, now),
            )?;
            txns.push(txn);
        }
        let results = self.store.commit_many(txns).await;
        let mut failure = None;
        for ((ak, marked, _), r) in marks.into_iter().zip(results) {
            match r {
                Ok(_) => {
                    match marked.state {
                        AgentState::Dead => report.marked_dead += 1,
                        AgentState::Unreachable => report.marked_unreachable += 1,
                        AgentState::Online => {
                            tracing::info!(tenant, node_id = %marked.node_id, "agent back online");
                            report.marked_online += 1;
                        }
                    }
                    states.insert(marked.node_id, marked.state);
                }
                Err(StoreError::Conflict { .. }) => {
                    // The agent registered or came back meanwhile: what it is now is what the
                    // store says, not what this sweep wanted. Its attempts are judged on that.
                    match self.load::<Agent>(&ak).await? {
                        Some((a, _)) => states.insert(marked.node_id, a.state),
                        // Gone: its attempts are an absent agent's.
                        None => states.insert(marked.node_id, AgentState::Dead),
                    };
                }
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Requeues the attempts in the inbox whose agent is dead (or absent), or that were not
    /// started in time, judging each agent on `states`, else on `fleet`, else on its record;
    /// removes leftover entries of ended attempts.
    async fn requeue_orphans(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        fleet: Option<&super::placement::Fleet>,
        states: &mut HashMap<String, AgentState>,
        report: &mut SweepReport,
    ) -> Result<()> {
        for entry in self.store.list(tenant, keys::INBOX).await? {
            let task: Task = dec(&entry.key, &entry.value)?;
            let Some((job_id, number)) = parse_attempt_id(&task.attempt_id) else {
                continue;
            };
            let ak = Key::new(tenant, keys::attempt(job_id, number))?;
            let Some((attempt, atv)) = self.load::<Attempt>(&ak).await? else {
                continue;
            };
            if !states.contains_key(&attempt.agent) {
                // Judged on the view; an agent the view does not hold (registered since it
                // was read) on its record. Only an agent with no record is taken as dead.
                let viewed =
                    fleet
                        .and_then(|f| f.agent(&attempt.agent))
                        .map(|slot| match slot.revoked {
                            true => AgentState::Dead,
                            false => slot.state,
                        });
                let state = match viewed {
                    Some(s) => Some(s),
                    None => {
                        let k = Key::new(tenant, keys::agent(&attempt.agent))?;
                        self.load::<Agent>(&k).await?.map(|(a, _)| swept_state(&a))
                    }
                };
                if let Some(state) = state {
                    states.insert(attempt.agent.clone(), state);
                }
            }
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
                Ok(Abandoned::Requeued) => report.requeued += 1,
                Ok(_) => report.failed += 1,
                Err(e) if is_conflict(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Abandons an attempt and puts its job back in the queue (or fails it when out of attempts,
    /// or ends it cancelled when a cancel was pending). Returns what became of the job.
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
    ) -> Result<Abandoned> {
        let jk = Key::new(tenant, keys::job(&attempt.job_id))?;
        let (mut job, jv) = self
            .load_found::<Job>(&jk, || format!("job {}", attempt.job_id))
            .await?;
        attempt.state = AttemptState::Abandoned;
        attempt.abandoned_reason = Some(reason.to_string());
        let ak = Key::new(tenant, keys::attempt(&attempt.job_id, attempt.number))?;
        let mut txn = Txn::new();
        if let Some(e) = epoch {
            txn = txn.fenced(e);
        }
        let mut txn = txn
            .put(ak, enc(&attempt), Expect::Version(atv))
            .delete(inbox_key, Expect::Any);
        let mut requeued = false;
        let mut ended = None;
        if job.current_attempt.as_deref() == Some(attempt.attempt_id.as_str())
            && !job.status.is_terminal()
        {
            let old = job.clone();
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
                    Key::new(tenant, keys::pending(&job.job_id))?,
                    enc(&Pending::of(&job)),
                    Expect::Any,
                );
            } else {
                job.status = JobStatus::Failed;
                job.finished_at = Some(now);
                job.error = Some(format!("gave up after {} attempts: {reason}", job.attempts));
            }
            txn = put_job(txn, tenant, Some(&old), &job, Expect::Version(jv))?;
            txn = forget_secrets(txn, tenant, &job)?;
            if !requeued {
                ended = Some(Box::new(job));
            }
        }
        tracing::info!(tenant, attempt = %attempt.attempt_id, reason, requeued, "attempt abandoned");
        self.store.commit(txn).await?;
        Ok(match ended {
            _ if requeued => Abandoned::Requeued,
            Some(job) => Abandoned::Ended(job),
            None => Abandoned::Left,
        })
    }

    /// Records that the caller's agent was heard from now, checking its session: a heartbeat
    /// must come from the holder of the node's registration. Hearing from an online agent is
    /// only noted in this node's memory; an agent the store shows unreachable or dead is written
    /// back online at once. Returns the id of the registration that holds the node.
    pub(super) async fn heartbeat_agent(
        &self,
        tenant: &str,
        caller: &AgentCaller<'_>,
        now: Millis,
        facts: Option<&Facts>,
    ) -> Result<String> {
        let node_id = caller.node_id;
        let ak = Key::new(tenant, keys::agent(node_id))?;
        for _ in 0..CAS_RETRIES {
            let (mut a, v) = self
                .load_found::<Agent>(&ak, || format!("agent {node_id} (register first)"))
                .await?;
            let registration = caller.registration_of(&a)?;
            // Facts come only when they changed: then the record is written.
            let new_facts = facts.filter(|f| **f != a.facts);
            if a.state == AgentState::Online && new_facts.is_none() {
                self.heard_from(tenant, node_id, now);
                return Ok(registration);
            }
            if let Some(f) = new_facts {
                tracing::info!(tenant, node_id, "agent facts changed");
                a.facts = f.clone();
            }
            log_back_online(tenant, node_id, &a);
            let came_back = a.state != AgentState::Online;
            a.state = AgentState::Online;
            a.last_seen = a.last_seen.max(now);
            let mut txn = Txn::new().put(ak.clone(), enc(&a), Expect::Version(v));
            if came_back {
                let online = crate::events::Event::of_agent("agent.online", &a, now);
                crate::events::record(&mut txn, tenant, &online)?;
            }
            if self.committed(txn).await? {
                self.heard_from(tenant, node_id, now);
                return Ok(registration);
            }
        }
        Err(agent_contended(node_id))
    }

    /// Registers the caller's agent (a durable write: its registration, labels and slots),
    /// checking that the registration is admitted ([`admit_registration`], judged on the
    /// freshest evidence of the current holder's life this node knows). Returns the id of the
    /// registration that holds the node and, for a new registration, its session secret.
    pub(super) async fn register_agent(
        &self,
        tenant: &str,
        caller: &AgentCaller<'_>,
        now: Millis,
        r: &RegisterAgent,
    ) -> Result<(String, Option<String>)> {
        let node_id = caller.node_id;
        let ak = Key::new(tenant, keys::agent(node_id))?;
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
            let mut was = None;
            let (agent, expect) = match found {
                Some((mut a, v)) => {
                    let holds = caller.holds(&a);
                    if !holds && a.registration.is_some() && a.state != AgentState::Dead {
                        // Heartbeats are not written: the holder's last sign of life is in the
                        // nodes' liveness records.
                        if let Some(at) = self.heard(tenant, now, false).await?.get(node_id) {
                            a.last_seen = a.last_seen.max(at);
                        }
                    }
                    let admission = admit_registration(Some(&a), holds, now, self.cfg.dead_after)
                        .map_err(JobError::Session)?;
                    if admission == Admission::New {
                        tracing::info!(tenant, node_id, "new registration of the agent");
                        fresh(&mut a);
                    }
                    // Declared labels and facts are replaced; admin labels are kept.
                    a.labels = r.labels.clone();
                    a.slots = r.slots.unwrap_or(a.slots).max(1);
                    a.hostname = r.hostname.clone();
                    a.version = r.version.clone();
                    if let Some(f) = &r.facts {
                        a.facts = f.clone();
                    }
                    log_back_online(tenant, node_id, &a);
                    was = Some(a.state);
                    a.state = AgentState::Online;
                    a.last_seen = now;
                    // Its credential passed the node revocation: it was issued after it.
                    a.revoked_at = None;
                    (a, Expect::Version(v))
                }
                None => {
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
                        admin_labels: BTreeMap::new(),
                        facts: r.facts.clone().unwrap_or_default(),
                        drained: false,
                        revoked_at: None,
                    };
                    fresh(&mut a);
                    (a, Expect::Absent)
                }
            };
            let mut txn = Txn::new().put(ak.clone(), enc(&agent), expect);
            let registered = crate::events::Event::of_agent("agent.registered", &agent, now);
            crate::events::record(&mut txn, tenant, &registered)?;
            if was.is_some_and(|s| s != AgentState::Online) {
                let online = crate::events::Event::of_agent("agent.online", &agent, now);
                crate::events::record(&mut txn, tenant, &online)?;
            }
            if self.committed(txn).await? {
                self.heard_from(tenant, node_id, now);
                let id = agent.registration.map(|r| r.id).unwrap_or_default();
                return Ok((id, secret));
            }
        }
        Err(agent_contended(node_id))
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
                        .load::<Attempt>(&Key::new(tenant, keys::attempt(job_id, n))?)
                        .await?
                    {
                        Some((a, _)) => {
                            a.agent == node_id
                                && a.registration.as_deref().is_none_or(|r| r == registration)
                                && matches!(a.state, AttemptState::Assigned | AttemptState::Running)
                                && !self
                                    .load::<Job>(&Key::new(tenant, keys::job(job_id))?)
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
                .load::<Attempt>(&Key::new(tenant, keys::attempt(job_id, n))?)
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
pub(super) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// An agent record of node `web-1`.
    pub(in crate::jobs) fn agent(state: AgentState, last_seen: Millis, registered: bool) -> Agent {
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
            admin_labels: BTreeMap::new(),
            facts: Default::default(),
            drained: false,
            revoked_at: None,
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

    const U: Duration = Duration::from_secs(6);
    const D: Duration = Duration::from_secs(15);

    #[test]
    fn silence_moves_an_agent_down_one_threshold_at_a_time_and_never_below_dead() {
        use AgentState::*;
        let heard = 100_000;
        // Heard recently: nothing to do.
        assert_eq!(judge(Online, heard, heard + 5_999, 0, U, D), None);
        assert_eq!(
            judge(Online, heard, heard + 6_000, 0, U, D),
            Some(Unreachable)
        );
        assert_eq!(judge(Unreachable, heard, heard + 6_000, 0, U, D), None);
        assert_eq!(judge(Unreachable, heard, heard + 14_999, 0, U, D), None);
        assert_eq!(
            judge(Unreachable, heard, heard + 15_000, 0, U, D),
            Some(Dead)
        );
        // A sweep that missed the unreachable window goes straight to dead.
        assert_eq!(judge(Online, heard, heard + 15_000, 0, U, D), Some(Dead));
        assert_eq!(judge(Dead, heard, heard + 60_000, 0, U, D), None);
    }

    #[test]
    fn an_agent_heard_from_again_is_online_whatever_it_was() {
        use AgentState::*;
        let now = 100_000;
        for state in [Unreachable, Dead] {
            assert_eq!(judge(state, now - 5_999, now, 0, U, D), Some(Online));
            assert_eq!(judge(state, now, now, 0, U, D), Some(Online));
            // Heard from too long ago to count as back.
            assert_ne!(judge(state, now - 6_000, now, 0, U, D), Some(Online));
        }
        assert_eq!(judge(Online, now, now, 0, U, D), None);
    }

    #[test]
    fn a_new_leaders_grace_delays_the_verdict_but_revives_no_one() {
        use AgentState::*;
        let heard = 100_000;
        let elected = heard + 60_000;
        // Silent for a minute, but this leader has only just been elected.
        assert_eq!(judge(Online, heard, elected, elected, U, D), None);
        assert_eq!(judge(Online, heard, elected + 5_999, elected, U, D), None);
        assert_eq!(
            judge(Online, heard, elected + 6_000, elected, U, D),
            Some(Unreachable)
        );
        assert_eq!(
            judge(Unreachable, heard, elected + 15_000, elected, U, D),
            Some(Dead)
        );
        // The grace is not evidence of life: an unreachable or dead agent stays so.
        assert_eq!(judge(Unreachable, heard, elected, elected, U, D), None);
        assert_eq!(judge(Dead, heard, elected, elected, U, D), None);
    }

    fn record(seq: u64, published_at: Millis) -> SeenRecord {
        SeenRecord {
            node: "fluxd-2".into(),
            seq,
            published_at,
            agents: BTreeMap::new(),
        }
    }

    #[test]
    fn a_record_encoded_from_memory_decodes_to_what_the_node_heard() {
        let heard = HashMap::from([("web-1".to_string(), 10), ("web-2".to_string(), 20)]);
        let out = Publishing {
            node: "fluxd-1",
            seq: 3,
            published_at: 30,
            agents: &heard,
        };
        let rec: SeenRecord = serde_json::from_slice(&enc(&out)).unwrap();
        assert_eq!(
            rec,
            SeenRecord {
                node: "fluxd-1".into(),
                seq: 3,
                published_at: 30,
                agents: heard.into_iter().collect(),
            }
        );
    }

    #[test]
    fn a_record_counts_while_fresh_and_stops_once_old_or_unchanged_for_the_dead_window() {
        let seen = Seen::default();
        let dead = 15_000;
        let t = 1_000_000;
        assert!(seen.counts("t", &record(1, t), t + 14_999, dead, true));
        // Published too long ago by its node's clock.
        assert!(!seen.counts("t", &record(1, t), t + 15_000, dead, false));
        // A node whose clock runs an hour ahead: its record looks fresh by its own time, but
        // this node sees it unchanged for the whole dead window and stops counting it.
        let ahead = t + 3_600_000;
        assert!(seen.counts("t", &record(7, ahead), t, dead, true));
        assert!(seen.counts("t", &record(7, ahead), t + 14_999, dead, true));
        assert!(!seen.counts("t", &record(7, ahead), t + 15_000, dead, true));
        // Published again: it counts again.
        assert!(seen.counts("t", &record(8, ahead + 1), t + 15_001, dead, true));
    }
}
