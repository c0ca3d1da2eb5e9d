//! The leader's rollout pass: for every unfinished rollout of a tenant (the `rollout_active/`
//! markers), read its record and the jobs its running targets wait for, decide with the pure
//! [`super::step`], and commit the decision as one fenced transaction: the record (a CAS on
//! its version) together with the jobs of the targets it starts, and the removal of the marker
//! when it finishes. Cancels of running jobs (a cancelled rollout, `on_halt = cancel`) are
//! fenced writes of their own, re-issued on every pass until the jobs end.
//!
//! Guarantees:
//! - a target's job exists if and only if the record that says it started committed: a leader
//!   killed at any point leaves its successor a record to continue from, and no job it does not
//!   know about; two leaders (or a leader and a user's pause) racing on one rollout cannot both
//!   commit, as both expect the version they read and the store fences the older epoch;
//! - the running count is taken from the record, where a target stays running until its end
//!   is recorded: `max_concurrency` holds across passes and across leader changes;
//! - one rollout's trouble (a corrupt record) does not stop the others;
//! - the jobs a rollout starts are admitted like submissions, against the tenant's queue and
//!   submit-rate quotas ([`crate::quota::admit`]), counted up across the pass: a target whose
//!   job the quota refuses stays pending (it is not failed) and the step is decided again on
//!   the next pass; the targets after it in the step wait too, so canaries still go first.

use std::collections::{HashMap, HashSet};

use super::{
    Action, JobEnd, Result, Rollout, RolloutError, RolloutStatus, RolloutView, Rollouts,
    TargetState, enc, step,
};
use crate::events::kinds as ev;
use crate::jobs::JobError;
use crate::keys;
use crate::model::{JobKind, Millis};
use crate::store::{Epoch, Expect, Key, Range, StoreError, Txn};

/// Unfinished rollouts of one tenant read at once in a pass: the pass pages through all of
/// them (at most [`super::MAX_UNFINISHED`]) in batches of this many.
pub const MAX_ACTIVE_PER_PASS: usize = 256;

/// What one pass did in a tenant, for metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Targets started.
    pub started: u64,
    /// Targets that ended, by the state they ended in.
    pub ended: Vec<TargetState>,
    /// Rollouts that finished, by their final status.
    pub finished: Vec<RolloutStatus>,
    /// Rollouts whose record moved under the pass (left for the next).
    pub conflicts: u64,
    /// Target jobs (runs or verifies) the tenant's quota did not admit yet.
    pub deferred: u64,
}

/// What admission knows during one pass over a tenant: its quota and its queue depth, counted
/// up as the pass starts jobs.
struct Admission {
    quota: crate::quota::Quota,
    queued: u64,
}

impl Rollouts {
    /// One pass over the tenant's unfinished rollouts, as leader of `epoch`.
    pub async fn pass(&self, tenant: &str, epoch: Epoch, now: Millis) -> Result<PassReport> {
        let mut report = PassReport::default();
        let mut online: Option<HashSet<String>> = None;
        let mut admission: Option<Admission> = None;
        let mut range = Range::first(keys::ROLLOUTS_ACTIVE, MAX_ACTIVE_PER_PASS);
        // Every unfinished rollout, a bounded page at a time: paused ones at the front cannot
        // hide newer ones.
        loop {
            let active = self.store.list_range(tenant, &range).await?;
            let Some(last) = active.last().map(|e| e.key.path().to_string()) else {
                break;
            };
            let online = match &mut online {
                Some(o) => &*o,
                None => &*online.insert(
                    self.jobs
                        .agents(tenant)
                        .await?
                        .into_iter()
                        .filter(|a| a.takes_work())
                        .map(|a| a.node_id)
                        .collect(),
                ),
            };
            let admission = match &mut admission {
                Some(a) => a,
                None => {
                    let quota = crate::quota::read(self.store.as_ref(), tenant, |key, reason| {
                        RolloutError::Corrupt { key, reason }
                    })
                    .await?;
                    let queued = self.jobs.queued_under(tenant, &quota).await?;
                    admission.insert(Admission { quota, queued })
                }
            };
            let full = active.len() == MAX_ACTIVE_PER_PASS;
            for e in active {
                let Some(id) = e.key.path().strip_prefix(keys::ROLLOUTS_ACTIVE) else {
                    continue;
                };
                match self
                    .advance(tenant, id, epoch, now, online, admission, &mut report)
                    .await
                {
                    Ok(()) => {}
                    Err(RolloutError::Store(e @ StoreError::Fenced { .. })) => {
                        return Err(RolloutError::Store(e));
                    }
                    Err(e) => {
                        tracing::warn!(tenant, rollout = id, error = %e, "rollout step failed");
                    }
                }
            }
            if !full {
                break;
            }
            range = range.after(last);
        }
        Ok(report)
    }

    /// Reads, decides and commits one step of rollout `id`.
    #[allow(clippy::too_many_arguments)]
    async fn advance(
        &self,
        tenant: &str,
        id: &str,
        epoch: Epoch,
        now: Millis,
        online: &HashSet<String>,
        admission: &mut Admission,
        report: &mut PassReport,
    ) -> Result<()> {
        let marker = Key::new(tenant, keys::rollout_active(id))?;
        let (r, version) = match self.load(tenant, id).await {
            Ok(x) => x,
            Err(RolloutError::NotFound(_)) => {
                // A marker without its record (the record was removed): drop the marker.
                let txn = Txn::new().fenced(epoch).delete(marker, Expect::Any);
                self.store.commit(txn).await?;
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        if r.status.is_finished() {
            let txn = Txn::new().fenced(epoch).delete(marker, Expect::Any);
            self.store.commit(txn).await?;
            return Ok(());
        }
        let ended = self.job_ends(tenant, &r).await?;
        let view = RolloutView {
            status: r.status,
            params: &r.params,
            targets: &r.targets,
            ended: &ended,
            online,
        };
        let mut actions = step(&view, now);
        self.admit_starts(tenant, &mut actions, admission, report);
        let applied = self.apply(tenant, id, &r, actions, marker, now)?;
        if applied.changed {
            let mut next = applied.next;
            next.updated_at = now;
            let txn = applied.txn.fenced(epoch).put(
                Key::new(tenant, keys::rollout(id))?,
                enc(&next),
                Expect::Version(version),
            );
            match self.store.commit(txn).await {
                Ok(_) => {
                    report.started += applied.started;
                    report.ended.extend(applied.ended);
                    report.finished.extend(applied.finished);
                }
                // A user paused or cancelled it meanwhile (or another pass won): the next
                // pass decides again from what is stored.
                Err(StoreError::Conflict { .. }) => {
                    report.conflicts += 1;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        for j in applied.cancels {
            match self.jobs.cancel_fenced(tenant, &j, now, Some(epoch)).await {
                Ok(_) | Err(JobError::NotFound(_)) | Err(JobError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// What became of the jobs the running targets of `r` wait for: the end of each one that
    /// ended, by job id (a job that is gone counts as failed).
    async fn job_ends(&self, tenant: &str, r: &Rollout) -> Result<HashMap<String, JobEnd>> {
        let mut ended = HashMap::new();
        for t in &r.targets {
            let Some(job_id) = t.current_job() else {
                continue;
            };
            let end = match self.jobs.get(tenant, job_id).await {
                Ok(j) if j.status.is_terminal() => JobEnd {
                    status: j.status,
                    exit_code: j.exit_code,
                    error: j.error,
                },
                Ok(_) => continue,
                Err(JobError::NotFound(_)) => JobEnd {
                    status: crate::model::JobStatus::Failed,
                    exit_code: None,
                    error: Some("its job is gone".into()),
                },
                Err(e) => return Err(e.into()),
            };
            ended.insert(job_id.to_string(), end);
        }
        Ok(ended)
    }

    /// Admission of the jobs a step starts, in the step's order: from the first one the quota
    /// refuses, the step starts no more (they stay pending or verifying, and are decided again
    /// on the next pass).
    fn admit_starts(
        &self,
        tenant: &str,
        actions: &mut Vec<Action>,
        admission: &mut Admission,
        report: &mut PassReport,
    ) {
        let mut refused = false;
        actions.retain(|a| {
            if !matches!(a, Action::Start(_) | Action::Verify(_)) {
                return true;
            }
            if !refused
                && crate::quota::admit(
                    &self.rates,
                    tenant,
                    &admission.quota,
                    admission.queued,
                    1,
                    std::time::Instant::now(),
                )
                .is_ok()
            {
                admission.queued += 1;
                return true;
            }
            refused = true;
            report.deferred += 1;
            false
        });
    }

    /// The step's `actions` applied to a copy of `r`: the next record, and the writes (jobs
    /// started, events, the marker's removal) to commit with it; cancels are kept apart.
    fn apply(
        &self,
        tenant: &str,
        id: &str,
        r: &Rollout,
        actions: Vec<Action>,
        marker: Key,
        now: Millis,
    ) -> Result<Applied> {
        let mut a = Applied {
            next: r.clone(),
            txn: Txn::new(),
            cancels: Vec::new(),
            changed: false,
            started: 0,
            ended: Vec::new(),
            finished: None,
        };
        for action in actions {
            a.changed |= !matches!(action, Action::CancelJob(_));
            match action {
                Action::Finish {
                    target,
                    state,
                    exit_code,
                    error,
                } => {
                    let t = &mut a.next.targets[target];
                    t.state = state;
                    t.exit_code = exit_code;
                    t.error = error;
                    t.finished_at = Some(now);
                    a.ended.push(state);
                    let e = ev::rollout_target_finished(id, t, now);
                    crate::events::record(&mut a.txn, tenant, &e)?;
                }
                Action::Start(i) | Action::Verify(i) => {
                    let verify = matches!(action, Action::Verify(_));
                    let req = r.job_request(&r.targets[i].node_id, verify);
                    let (job, job_txn) = self.jobs.prepare_submit_in(
                        tenant,
                        &r.created_by,
                        &req,
                        now,
                        JobKind::Rollout,
                        &r.rollout_id,
                    )?;
                    a.txn.ops.extend(job_txn.ops);
                    let t = &mut a.next.targets[i];
                    if verify {
                        t.state = TargetState::Verifying;
                        t.verify_job_id = Some(job.job_id);
                    } else {
                        t.state = TargetState::Running;
                        t.job_id = Some(job.job_id);
                        t.started_at = Some(now);
                        a.started += 1;
                        let e = ev::rollout_target_started(
                            id,
                            t,
                            t.job_id.as_deref().unwrap_or(""),
                            now,
                        );
                        crate::events::record(&mut a.txn, tenant, &e)?;
                    }
                }
                Action::Skip(i) => {
                    let t = &mut a.next.targets[i];
                    t.state = TargetState::Skipped;
                    t.error = Some("its agent was offline at its turn".into());
                    t.finished_at = Some(now);
                    a.ended.push(TargetState::Skipped);
                    let e = ev::rollout_target_finished(id, t, now);
                    crate::events::record(&mut a.txn, tenant, &e)?;
                }
                Action::CancelJob(j) => a.cancels.push(j),
                Action::Halt(why) => {
                    let e = ev::rollout_halted(id, &why, now);
                    crate::events::record(&mut a.txn, tenant, &e)?;
                    a.next.status = RolloutStatus::Halting;
                    a.next.halt_reason = Some(why);
                }
                Action::Complete(s) => {
                    a.next.status = s;
                    a.next.finished_at = Some(now);
                    for t in &mut a.next.targets {
                        if t.state == TargetState::Pending {
                            t.state = TargetState::NotStarted;
                        }
                    }
                    a.txn = std::mem::take(&mut a.txn).delete(marker.clone(), Expect::Any);
                    a.finished = Some(s);
                    crate::events::record(&mut a.txn, tenant, &ev::rollout_finished(id, s, now))?;
                }
            }
        }
        Ok(a)
    }
}

/// A step applied to a rollout's record ([`Rollouts::apply`]), before it is committed.
struct Applied {
    /// The record after the step.
    next: Rollout,
    /// Writes that commit with the record.
    txn: Txn,
    /// Jobs to cancel after the commit (fenced writes of their own).
    cancels: Vec<String>,
    /// Whether the record changes (anything but cancels).
    changed: bool,
    /// Targets started, targets ended (by state) and the final status, for the report once
    /// the commit succeeds.
    started: u64,
    ended: Vec<TargetState>,
    finished: Option<RolloutStatus>,
}

/// Rollout records read at once in a retention pass (the oldest first), and most deleted in one.
pub const COLLECT_BATCH: usize = 64;

impl Rollouts {
    /// Retention of finished rollouts: pages through the tenant's rollouts oldest first, in
    /// pages of [`COLLECT_BATCH`], and deletes up to [`COLLECT_BATCH`] of those that finished
    /// more than `retention_ms` before `now`, as leader of `epoch` (one fenced transaction,
    /// each deletion expecting the record as read). An unfinished rollout is never collected,
    /// and it holds nothing up: a pass looks at up to [`super::MAX_UNFINISHED`] +
    /// [`COLLECT_BATCH`] records, past every unfinished one the cap allows. Returns how many
    /// were deleted.
    pub async fn collect(
        &self,
        tenant: &str,
        retention_ms: u64,
        epoch: Epoch,
        now: Millis,
    ) -> Result<u64> {
        let mut txn = Txn::new().fenced(epoch);
        let mut n = 0;
        let mut seen = 0;
        let mut range = Range::first(keys::ROLLOUTS, COLLECT_BATCH);
        while n < COLLECT_BATCH && seen < self.max_unfinished + COLLECT_BATCH {
            let entries = self.store.list_range(tenant, &range).await?;
            let full = entries.len() == COLLECT_BATCH;
            let Some(last) = entries.last().map(|e| e.key.path().to_string()) else {
                break;
            };
            seen += entries.len();
            for e in entries {
                let Ok(r) = serde_json::from_slice::<super::Rollout>(&e.value) else {
                    continue;
                };
                if n < COLLECT_BATCH && expired(&r, retention_ms, now) {
                    txn = txn.delete(e.key, Expect::Version(e.version));
                    n += 1;
                }
            }
            if !full {
                break;
            }
            range = range.after(last);
        }
        if n == 0 {
            return Ok(0);
        }
        match self.store.commit(txn).await {
            Ok(_) => Ok(n as u64),
            Err(StoreError::Conflict { .. }) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

/// Whether a rollout may be collected: finished more than `retention_ms` before `now`. Pure.
pub fn expired(r: &super::Rollout, retention_ms: u64, now: Millis) -> bool {
    r.status.is_finished()
        && r.finished_at
            .is_some_and(|f| now >= f.saturating_add(retention_ms))
}
