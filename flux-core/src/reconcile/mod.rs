//! Desired-state reconciliation: storing states with CAS, planning and applying a whole
//! `state.toml`, and the leader's loop that converges every target agent.
//!
//! Per (state, agent) the reconciler keeps a [`TargetStatus`] record and runs rounds of
//! `check` → (`apply` → `check` to verify). Each step is an ordinary job pinned to the agent.
//! The decision of what to do next is the pure [`step`] function (in `step.rs`);
//! [`Reconciler::pass`] only reads, decides every target's step, and commits all of the pass's
//! writes as one batch of independent fenced transactions. Storing and applying states is the
//! state service, [`crate::state::States`], which [`Reconciler`] also offers for its callers.
//!
//! Guarantees:
//! - a step's job is created in the same store transaction as the status record that points at
//!   it, fenced by the leader's epoch and conditional on the record's and the state's versions:
//!   either both exist or neither does, so a leader that dies at any point leaves its successor
//!   a record to continue from, and no job a record does not know about. A repair is neither
//!   lost nor run twice, and a state deleted meanwhile gets no new job;
//! - reconciler jobs have a single attempt: an apply interrupted by a lost agent is not re-run
//!   blindly, the next round checks first;
//! - a failing target backs off exponentially (from its interval up to an hour);
//! - two applies that race cannot silently overwrite each other: every write of a state is a CAS
//!   on its version, and an apply may state the versions it planned against;
//! - a state with a `rollout` table never has more than its `max_concurrency` targets
//!   repairing at once, and once more than `max_errors` of its repairs failed over its current
//!   version no new apply starts until it changes or is resumed; the halt is written in a
//!   fenced transaction conditional on the state's version, with its `state.halted` event
//!   (the pure policy is `rollout.rs`).

mod rollout;
mod step;

pub use rollout::{
    Gate, StateRolloutStatus, StateRolloutView, counted_failures, holds_slot, resumed,
    view as rollout_view,
};

pub use step::{
    Deferred, Event, InFlight, JobView, MAX_BACKOFF_MS, MAX_EVENTS, Step, StepKind, Tally,
    TargetState, TargetStatus, step,
};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use futures::StreamExt;

use crate::jobs::{JobError, Jobs};
use crate::keys;
use crate::model::{Agent, Job, JobKind, Millis, SubmitJob};
use crate::quota::{self, Quota, RateLimiter};
use crate::state::{
    ApplyRequest, Plan, StateError, StateSpec, StateView, States, dec, enc, target_ids,
};
use crate::store::{Change, DynStore, Epoch, Expect, Key, StoreError, Txn, Version};

/// Output kept from a failed check or apply.
pub const OUTPUT_TAIL_BYTES: usize = 4096;

/// Who reconciler jobs are submitted as.
pub const RECONCILER: &str = "reconciler";

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// The reconciler, and the state service it drives ([`States`]). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reconciler {
    states: States,
    store: DynStore,
    jobs: Jobs,
    /// The submit-rate buckets of reconciler jobs (the leader's own, per tenant).
    rates: Arc<RateLimiter>,
    /// Per tenant, the jobs its targets wait for after the last pass ([`Reconciler::concerns`]).
    watched: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

/// Job reads of one pass in flight at once.
const READS_AT_ONCE: usize = 64;

/// One (state, agent) of a pass, as read.
struct Target<'a> {
    spec: &'a StateSpec,
    /// Version of the state.
    version: Version,
    /// Whether the target's agent is online.
    online: bool,
    cur: TargetStatus,
    /// Version of its record, if it has one.
    stored_version: Option<Version>,
}

/// What a pass does for one target.
#[derive(Default)]
struct Decided {
    /// The fenced transaction to commit, if any.
    txn: Option<Txn>,
    /// Counted once `txn` commits (or at once, without one).
    tally: Tally,
    /// The job the target waits for once `txn` commits (or at once, without one).
    waits_for: Option<String>,
}

/// Where a target's record is written in one pass: its key, what the write expects of it, and
/// the pass's tenant, fence and clock.
struct RecordWrite<'a> {
    tenant: &'a str,
    epoch: Epoch,
    key: Key,
    expect: Expect,
    now: Millis,
}

impl RecordWrite<'_> {
    /// Adds the fenced put of the record `rec` to `txn`.
    fn put(self, txn: Txn, rec: &TargetStatus) -> Txn {
        txn.fenced(self.epoch).put(self.key, enc(rec), self.expect)
    }

    /// Adds the fenced put of `rec` to `txn`, then the event of the move from `cur`, if any.
    fn put_with_event(self, txn: Txn, cur: &TargetStatus, rec: &TargetStatus) -> Result<Txn> {
        let (tenant, now) = (self.tenant, self.now);
        let mut txn = self.put(txn, rec);
        if let Some(e) = state_event(cur, rec, now) {
            crate::events::record(&mut txn, tenant, &e)?;
        }
        Ok(txn)
    }
}

/// A target's apply held back by its state's rollout: recorded (once) as drifted and deferred.
fn held_by_rollout(
    w: RecordWrite<'_>,
    cur: &TargetStatus,
    reason: String,
    waiting: Option<String>,
) -> Result<Decided> {
    let txn = match cur.held_by_rollout(reason, w.now) {
        Some(rec) => Some(w.put_with_event(Txn::new(), cur, &rec)?),
        None => None,
    };
    Ok(Decided {
        txn,
        tally: Tally {
            held: 1,
            ..Tally::default()
        },
        waits_for: waiting,
    })
}

/// A target's step refused by its tenant's quota: the record says why it waits.
fn deferred_by_quota(
    w: RecordWrite<'_>,
    cur: &TargetStatus,
    kind: StepKind,
    refusal: quota::Refusal,
    waiting: Option<String>,
) -> Decided {
    let txn = cur
        .deferred_by_quota(kind, refusal.to_string(), w.now)
        .map(|rec| w.put(Txn::new(), &rec));
    Decided {
        txn,
        tally: Tally {
            deferred: 1,
            ..Tally::default()
        },
        waits_for: waiting,
    }
}

/// What admission knows during one pass over a tenant: its quota and its queue depth, counted
/// up as the pass submits.
struct Admission {
    quota: Quota,
    queued: u64,
}

/// Every stored state of a tenant, by name, with its version.
type StoredStates = BTreeMap<String, (crate::state::StoredState, Version)>;

/// The halt records of a tenant's states, by state name, with their versions.
type Halts = HashMap<String, (StateRolloutStatus, Version)>;

/// Target records by (state, agent), with their versions.
type Records = BTreeMap<(String, String), (TargetStatus, Version)>;

/// Pairs every (state, target agent) with its record (or a new one); returns the records left.
fn targets_of<'a>(
    states: &'a StoredStates,
    statuses: Vec<(TargetStatus, Version)>,
    agents: &[Agent],
    online: &HashSet<&str>,
    now: Millis,
) -> (Vec<Target<'a>>, Records) {
    let mut by_target: Records = statuses
        .into_iter()
        .map(|(t, v)| ((t.state.clone(), t.agent.clone()), (t, v)))
        .collect();
    let mut targets: Vec<Target<'_>> = Vec::new();
    for (name, (stored, version)) in states {
        for agent in target_ids(&stored.spec, agents) {
            let (cur, stored_version) = by_target
                .remove(&(name.clone(), agent.clone()))
                .map_or_else(
                    || (TargetStatus::new(name, &agent, now), None),
                    |(t, v)| (t, Some(v)),
                );
            targets.push(Target {
                spec: &stored.spec,
                version: *version,
                online: online.contains(agent.as_str()),
                cur,
                stored_version,
            });
        }
    }
    (targets, by_target)
}

/// The writes of one pass, and what each means for the pass's result once committed.
#[derive(Default)]
struct PassWrites {
    txns: Vec<Txn>,
    /// Per transaction: what its target's decision was and the job the target waits for
    /// if it does not land (`None` for the removal of a gone record, or a halt record).
    outcomes: Vec<Option<(Decided, Option<String>)>>,
    tally: Tally,
    watched: HashSet<String>,
}

impl PassWrites {
    /// Adds what was decided for target `t` (which waited for `waiting`) to the pass.
    fn add(
        &mut self,
        t: &Target<'_>,
        waiting: Option<String>,
        decided: Result<Decided>,
    ) -> Result<()> {
        match decided {
            Ok(mut d) => match d.txn.take() {
                Some(txn) => {
                    self.txns.push(txn);
                    self.outcomes.push(Some((d, waiting)));
                }
                None => {
                    self.tally.add(d.tally);
                    self.watched.extend(d.waits_for);
                }
            },
            Err(StateError::Jobs(e)) => {
                self.watched.extend(waiting);
                tracing::warn!(state = %t.spec.name, agent = %t.cur.agent, error = %e, "reconcile step failed");
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Adds the removal of the records of targets that are gone (state deleted, agent unmatched).
    fn remove_gone(&mut self, tenant: &str, epoch: Epoch, gone: Records) -> Result<()> {
        for ((_, _), (t, v)) in gone {
            let k = Key::new(tenant, keys::status(&t.state, &t.agent))?;
            self.txns
                .push(Txn::new().fenced(epoch).delete(k, Expect::Version(v)));
            self.outcomes.push(None);
        }
        Ok(())
    }
}

/// The event of a target moving from `cur` to `next`, if its status changed to one worth telling.
fn state_event(
    cur: &TargetStatus,
    next: &TargetStatus,
    now: Millis,
) -> Option<crate::events::Event> {
    if cur.status == next.status {
        return None;
    }
    let kind = match next.status {
        TargetState::Compliant if cur.status == TargetState::Applying => "state.repaired",
        TargetState::Compliant => "state.compliant",
        TargetState::Drifted => "state.drifted",
        TargetState::Failed => "state.failed",
        _ => return None,
    };
    let mut e = crate::events::Event::new(kind, format!("{}/{}", next.state, next.agent), now);
    e.node_id = Some(next.agent.clone());
    e.data = serde_json::json!({
        "state": next.state,
        "status": next.status.as_str(),
        "previous": cur.status.as_str(),
    });
    Some(e)
}

impl Reconciler {
    pub fn new(store: DynStore, jobs: Jobs) -> Reconciler {
        Reconciler {
            states: States::new(store.clone(), jobs.clone()),
            store,
            jobs,
            rates: Arc::new(RateLimiter::default()),
            watched: Arc::default(),
        }
    }

    /// The state service this reconciler converges.
    pub fn states(&self) -> &States {
        &self.states
    }

    /// Every state of a tenant with its targets' status.
    pub async fn list(&self, tenant: &str) -> Result<Vec<StateView>> {
        self.states.list(tenant).await
    }

    /// One state with its targets' status.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<StateView> {
        self.states.get(tenant, name).await
    }

    /// See [`States::put`].
    pub async fn put(
        &self,
        tenant: &str,
        by: &str,
        spec: StateSpec,
        expect: Expect,
        now: Millis,
    ) -> Result<(Version, bool)> {
        self.states.put(tenant, by, spec, expect, now).await
    }

    /// See [`States::delete`].
    pub async fn delete(&self, tenant: &str, name: &str, expect: Expect) -> Result<Version> {
        self.states.delete(tenant, name, expect).await
    }

    /// See [`States::apply`].
    pub async fn apply(
        &self,
        tenant: &str,
        by: &str,
        req: ApplyRequest,
        now: Millis,
    ) -> Result<Plan> {
        self.states.apply(tenant, by, req, now).await
    }

    /// One reconcile pass over a tenant: for every (state, target agent) decide the next step
    /// and what it needs (a record to write, a job to submit with it), then commit every
    /// target's transaction at once ([`crate::store::Store::commit_many`]), each fenced and
    /// conditional on its record's version; drop records of targets that no longer exist in
    /// the same batch. A target whose write conflicts is left for the next pass.
    pub async fn pass(&self, tenant: &str, epoch: Epoch, now: Millis) -> Result<Tally> {
        let states = self.states.stored_states(tenant).await?;
        let statuses = self.states.statuses(tenant, keys::STATUSES).await?;
        if states.is_empty() && statuses.is_empty() {
            self.watch(tenant, HashSet::new());
            return Ok(Tally::default());
        }
        let agents = self.jobs.agents(tenant).await?;
        // Drained and revoked agents get no new checks, as they get no new jobs.
        let online: HashSet<&str> = agents
            .iter()
            .filter(|a| a.takes_work())
            .map(|a| a.node_id.as_str())
            .collect();
        let mut admission = self.admission(tenant).await?;
        let halts = self.halts(tenant, &states).await?;
        let (targets, gone) = targets_of(&states, statuses, &agents, &online, now);
        let steps = self.steps(tenant, &targets, now).await;
        let mut writes = PassWrites::default();
        let mut gates = self.gates(tenant, epoch, &states, &targets, &steps, &halts, now)?;
        for txn in gates.values_mut().filter_map(|(_, h)| h.take()) {
            writes.txns.push(txn);
            writes.outcomes.push(None);
        }
        for (t, planned) in targets.iter().zip(steps) {
            let waiting = t.cur.in_flight.as_ref().map(|f| f.job_id.clone());
            let gate = gates.get_mut(t.spec.name.as_str()).map(|(g, _)| g);
            let decided =
                planned.and_then(|st| self.decide(tenant, epoch, t, st, gate, now, &mut admission));
            writes.add(t, waiting, decided)?;
        }
        writes.remove_gone(tenant, epoch, gone)?;
        self.commit_pass(tenant, writes).await
    }

    /// Reads what admission of the pass's jobs starts from: the tenant's quota and queue depth.
    async fn admission(&self, tenant: &str) -> Result<Admission> {
        // Reconciler jobs are admitted like submissions: they count against the tenant's queue
        // and submit-rate quotas, and wait (recorded on the target) when refused.
        let quota = quota::read(self.store.as_ref(), tenant, |key, reason| {
            StateError::Corrupt { key, reason }
        })
        .await?;
        let queued = self.jobs.queued_under(tenant, &quota).await?;
        Ok(Admission { quota, queued })
    }

    /// Reads the halt records of the states that have a rollout (none read if no state has one).
    async fn halts(&self, tenant: &str, states: &StoredStates) -> Result<Halts> {
        let mut halts: Halts = HashMap::new();
        if states.values().any(|(s, _)| s.spec.rollout.is_some()) {
            for e in self.store.list(tenant, keys::STATE_ROLLOUTS).await? {
                let rec: StateRolloutStatus = dec(&e.key, &e.value)?;
                if let Some(name) = e.key.path().strip_prefix(keys::STATE_ROLLOUTS) {
                    halts.insert(name.to_string(), (rec, e.version));
                }
            }
        }
        Ok(halts)
    }

    /// Reads what became of every target's job, side by side, and decides each target's step.
    async fn steps(&self, tenant: &str, targets: &[Target<'_>], now: Millis) -> Vec<Result<Step>> {
        // What became of every target's job, read side by side.
        // (The futures are made by a plain iterator, so that the pass's future stays `Send`.)
        let reads: Vec<_> = targets
            .iter()
            .map(|t| self.job_view(tenant, t.spec, &t.cur))
            .collect();
        let views: Vec<Result<Option<JobView>>> = futures::stream::iter(reads)
            .buffered(READS_AT_ONCE)
            .collect()
            .await;
        // Every target's next step, decided purely before anything is granted.
        targets
            .iter()
            .zip(views)
            .map(|(t, view)| {
                view.map(|job| step(&t.cur, t.spec, t.version, t.online, job.as_ref(), now))
            })
            .collect()
    }

    /// Commits the pass's batch and counts what landed; records the jobs its targets wait for.
    async fn commit_pass(&self, tenant: &str, writes: PassWrites) -> Result<Tally> {
        let PassWrites {
            txns,
            outcomes,
            mut tally,
            mut watched,
        } = writes;
        if txns.is_empty() {
            self.watch(tenant, watched);
            return Ok(tally);
        }
        let mut failure: Option<StoreError> = None;
        let results = self.store.commit_many(txns).await;
        for (r, outcome) in results.into_iter().zip(outcomes) {
            let landed = match r {
                Ok(_) => true,
                // Another writer moved the record; the next pass looks again.
                Err(StoreError::Conflict { .. }) => false,
                Err(e @ StoreError::Fenced { .. }) => return Err(e.into()),
                Err(e) => {
                    failure.get_or_insert(e);
                    false
                }
            };
            if let Some((d, waiting)) = outcome {
                if landed {
                    tally.add(d.tally);
                    watched.extend(d.waits_for);
                } else {
                    watched.extend(waiting);
                }
            }
        }
        self.watch(tenant, watched);
        match failure {
            Some(e) => Err(e.into()),
            None => Ok(tally),
        }
    }

    /// Whether a store change may give the reconciler work in its tenant: a desired state
    /// changed, or a job that one of its targets waits for (or was just given) changed; or
    /// anything may have, on a resync. Other jobs' updates do not wake it; agents coming and
    /// going are seen on the reconciler's regular tick.
    pub fn concerns(&self, c: &Change) -> bool {
        if c.is_resync()
            || c.paths
                .iter()
                .any(|p| p.starts_with(keys::STATES) || p.starts_with(keys::STATE_ROLLOUTS))
        {
            return true;
        }
        let watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        let Some(jobs) = watched.get(&c.tenant) else {
            return false;
        };
        c.paths.iter().any(|p| {
            p.strip_prefix(keys::JOBS)
                .is_some_and(|id| jobs.contains(id))
        })
    }

    /// Records the jobs the tenant's targets wait for after a pass.
    fn watch(&self, tenant: &str, jobs: HashSet<String>) {
        let mut watched = self.watched.lock().unwrap_or_else(|e| e.into_inner());
        if jobs.is_empty() {
            watched.remove(tenant);
        } else {
            watched.insert(tenant.to_string(), jobs);
        }
    }

    /// What became of the job `cur` waits for (with its output tail once it failed), if any.
    async fn job_view(
        &self,
        tenant: &str,
        spec: &StateSpec,
        cur: &TargetStatus,
    ) -> Result<Option<JobView>> {
        let Some(f) = &cur.in_flight else {
            return Ok(None);
        };
        match self.jobs.get(tenant, &f.job_id).await {
            Ok(j) => {
                let mut v = JobView::of(&j);
                // An apply fails on any non-zero exit; a check on any other than desired.
                let wanted = match f.kind {
                    StepKind::Apply => 0,
                    _ => spec.desired_exit_code,
                };
                if j.status.is_terminal() && j.exit_code != Some(wanted) {
                    v.output = self.output_tail(tenant, &j).await?;
                }
                Ok(Some(v))
            }
            Err(JobError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The rollout gate of every state that has a rollout ([`Gate::of`], over its targets as
    /// they will be once this pass's steps land), with the fenced transaction (and event) that
    /// records a halt found this pass, conditional on the state's version.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn gates<'a>(
        &self,
        tenant: &str,
        epoch: Epoch,
        states: &'a BTreeMap<String, (crate::state::StoredState, Version)>,
        targets: &[Target<'_>],
        steps: &[Result<Step>],
        halts: &HashMap<String, (StateRolloutStatus, Version)>,
        now: Millis,
    ) -> Result<HashMap<&'a str, (Gate, Option<Txn>)>> {
        let mut gates = HashMap::new();
        for (name, (stored, version)) in states {
            let Some(r) = &stored.spec.rollout else {
                continue;
            };
            let mut holding = 0;
            let mut after: Vec<&TargetStatus> = Vec::new();
            for (t, planned) in targets.iter().zip(steps) {
                if t.spec.name != *name {
                    continue;
                }
                let next = match planned {
                    Ok(Step::Save(s, _)) => {
                        holding += usize::from(rollout::holds_slot(s));
                        s
                    }
                    Ok(Step::Submit(StepKind::Verify, s, _)) => {
                        holding += 1;
                        s
                    }
                    Ok(Step::Submit(_, s, _)) => s,
                    Ok(Step::Wait) | Err(_) => {
                        holding += usize::from(rollout::holds_slot(&t.cur));
                        &t.cur
                    }
                };
                after.push(next);
            }
            let n = after.len();
            let rec = halts.get(name);
            let gate = Gate::of(r, *version, after, n, holding, rec.map(|(r, _)| r), now);
            let halt = match &gate.halt {
                Some(h) => {
                    let expect = rec.map_or(Expect::Absent, |(_, v)| Expect::Version(*v));
                    let mut txn = Txn::new()
                        .fenced(epoch)
                        .check(
                            Key::new(tenant, keys::state(name))?,
                            Expect::Version(*version),
                        )
                        .put(Key::new(tenant, keys::state_rollout(name))?, enc(h), expect);
                    let mut e = crate::events::Event::new("state.halted", name.clone(), now);
                    e.data = serde_json::json!({
                        "state": name,
                        "version": version,
                        "failed_repairs": gate.errors,
                        "max_errors": gate.max_errors,
                    });
                    crate::events::record(&mut txn, tenant, &e)?;
                    tracing::warn!(state = %name, failed = gate.errors, max_errors = gate.max_errors, "remediation halted");
                    Some(txn)
                }
                None => None,
            };
            gates.insert(name.as_str(), (gate, halt));
        }
        Ok(gates)
    }

    /// Builds the transaction a target's step (decided by the pure [`step`]) needs: none
    /// (wait, or nothing to record), its record, or its record with a new job. An apply the
    /// state's rollout `gate` holds back is recorded as deferred instead.
    #[allow(clippy::too_many_arguments)]
    fn decide(
        &self,
        tenant: &str,
        epoch: Epoch,
        t: &Target<'_>,
        planned: Step,
        gate: Option<&mut Gate>,
        now: Millis,
        admission: &mut Admission,
    ) -> Result<Decided> {
        let cur = &t.cur;
        let waiting = cur.in_flight.as_ref().map(|f| f.job_id.clone());
        let (mut next, tally, submit) = match planned {
            Step::Wait => {
                return Ok(Decided {
                    waits_for: waiting,
                    ..Decided::default()
                });
            }
            Step::Save(s, t) => (s, t, None),
            Step::Submit(kind, s, t) => (s, t, Some(kind)),
        };
        let w = RecordWrite {
            tenant,
            epoch,
            key: Key::new(tenant, keys::status(&next.state, &next.agent))?,
            expect: t.stored_version.map_or(Expect::Absent, Expect::Version),
            now,
        };
        if submit == Some(StepKind::Apply)
            && let Some(gate) = gate
            && let Err(reason) = gate.take()
        {
            // Held back by the state's rollout: recorded (once) as drifted and deferred, and
            // decided again on the next passes.
            return held_by_rollout(w, cur, reason, waiting);
        }
        if let Some(kind) = submit
            && let Err(refusal) = quota::admit(
                &self.rates,
                tenant,
                &admission.quota,
                admission.queued,
                1,
                Instant::now(),
            )
        {
            // Not past the quota: the target records why it waits, and the step is decided
            // again on the next passes.
            return Ok(deferred_by_quota(w, cur, kind, refusal, waiting));
        }
        next.deferred = None;
        let txn = match submit {
            Some(kind) => {
                let txn = self.submit_step(tenant, t, kind, &mut next, now)?;
                // Counted now: the rest of the pass is admitted against it.
                admission.queued += 1;
                txn
            }
            None => Txn::new(),
        };
        let txn = w.put_with_event(txn, cur, &next)?;
        Ok(Decided {
            txn: Some(txn),
            tally,
            waits_for: next.in_flight.as_ref().map(|f| f.job_id.clone()),
        })
    }

    /// Prepares the job of a `kind` step on `next`'s agent and points `next` at it, in a
    /// transaction conditional on the state's version.
    fn submit_step(
        &self,
        tenant: &str,
        t: &Target<'_>,
        kind: StepKind,
        next: &mut TargetStatus,
        now: Millis,
    ) -> Result<Txn> {
        let spec = t.spec;
        let command = match kind {
            StepKind::Check | StepKind::Verify => &spec.check,
            StepKind::Apply => &spec.apply,
        };
        let req = SubmitJob {
            command: Some(command.clone()),
            node_id: Some(next.agent.clone()),
            env: spec.env.clone(),
            timeout_secs: Some(spec.timeout_secs),
            max_attempts: Some(1),
            ..SubmitJob::default()
        };
        let (job, job_txn) =
            self.jobs
                .prepare_submit_as(tenant, RECONCILER, &req, now, JobKind::Reconciler)?;
        if kind == StepKind::Apply {
            next.event(now, "applying", "apply submitted".into(), Some(&job.job_id));
        }
        next.in_flight = Some(InFlight {
            kind,
            job_id: job.job_id,
        });
        // The job exists only if the record pointing at it does, and only while the
        // state is still at the version the step was decided on.
        Ok(job_txn.check(
            Key::new(tenant, keys::state(&spec.name))?,
            Expect::Version(t.version),
        ))
    }

    async fn output_tail(&self, tenant: &str, job: &Job) -> Result<Option<String>> {
        let Some(att) = &job.current_attempt else {
            return Ok(None);
        };
        let chunks = self.jobs.output(tenant, att, 0).await?;
        let mut text: String = chunks.iter().map(|c| c.data.as_str()).collect();
        if text.len() > OUTPUT_TAIL_BYTES {
            let mut cut = text.len() - OUTPUT_TAIL_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = format!("…{}", &text[cut..]);
        }
        Ok((!text.is_empty()).then_some(text))
    }

    /// Targets per status over every state of a tenant (for metrics).
    pub async fn counts(&self, tenant: &str) -> Result<BTreeMap<TargetState, usize>> {
        let mut m = BTreeMap::new();
        for v in self.list(tenant).await? {
            for t in v.status {
                *m.entry(t.status).or_default() += 1;
            }
        }
        Ok(m)
    }
}
