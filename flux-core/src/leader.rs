//! The leader's work while it holds the lease: the job loop (liveness sweeps, requeues,
//! scheduling) and the reconcile loop, run side by side until a write is fenced. The lease
//! itself is [`crate::lease`]; the node that runs this (fluxd) supplies a [`Host`]: the quotas
//! it caches and where the passes' tallies go (its metrics).
//!
//! Which store changes wake which loop is data ([`wakes_job_work`], [`wakes_reconcile`]), and
//! each pass reports what it did per tenant ([`Tally`]).
//!
//! Guarantees:
//! - [`work`] returns only when a leader write was fenced, with the epoch in force; any other
//!   failure of a pass is logged and the pass retried on the next wake-up or tick;
//! - one tenant's failing reconcile pass (a corrupt record, say) does not stop the others'.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::jobs::index::Indexes;
use crate::jobs::listing::BACKFILL_BATCH;
use crate::jobs::{IndexBackfill, JobError, Jobs};
use crate::keys;
use crate::model::{Millis, now_ms};
use crate::quota::{Quota, QuotaError};
use crate::reconcile::Reconciler;
use crate::retention::{Collector, RetentionConfig};
use crate::state::StateError;
use crate::store::{Change, DynStore, Epoch, Store, StoreError};

/// How often the reconciler looks at every target even when nothing changed (due checks).
pub const RECONCILE_TICK: Duration = Duration::from_millis(500);
/// Least time between two passes started by changes.
pub const RECONCILE_GAP: Duration = Duration::from_millis(20);

/// What one pass did for one tenant, for the node's metrics.
#[derive(Debug, Clone, PartialEq)]
pub enum Tally {
    /// A liveness sweep of the job loop: attempts taken back from agents and requeued, and the
    /// tenant's agents online, unreachable and dead as the leader's view of the fleet held
    /// them when the sweep began ([`crate::jobs::placement::Fleet::by_state`]).
    Sweep { requeued: u64, agents: [u64; 3] },
    /// A reconcile pass: check rounds started, drift found, repairs made, rounds failed.
    Reconcile(crate::reconcile::Tally),
    /// A schedule firing pass: slots fired, late slots given up, slots skipped by `overlap`.
    Schedule {
        fired: u64,
        missed: u64,
        skipped: u64,
    },
    /// A garbage-collection pass: objects deleted, batches that lost a race.
    Gc {
        deleted: crate::retention::Deleted,
        conflicts: u64,
    },
    /// A rollout pass: targets started and ended, rollouts finished.
    Rollout(crate::rollout::driver::PassReport),
}

/// What the leader's work needs from the node running it.
#[async_trait]
pub trait Host: Send + Sync {
    /// The tenant's quota (the node may cache it briefly).
    async fn quota(&self, tenant: &str) -> Result<Quota, QuotaError>;
    /// Called after each tenant's sweep or reconcile pass.
    fn tally(&self, tenant: &str, tally: Tally);
    /// Called for each job the collector deleted (the record as it was read), after the batch
    /// committed.
    fn collected(&self, _tenant: &str, _job: &crate::model::Job) {}
    /// Called for each webhook delivery attempt: `delivered`, `failed` (given up) or `retried`.
    fn webhook_delivery(&self, _tenant: &str, _result: &str) {}
    /// Called for each slot a schedule fired, with its delay from the slot's due instant.
    fn schedule_fired(&self, _tenant: &str, _lag: Duration) {}
}

/// Whether a store change may give the job loop work: a pending job or an inbox changed (or
/// anything may have, on a resync).
pub fn wakes_job_work(c: &Change) -> bool {
    c.is_resync()
        || c.paths
            .iter()
            .any(|p| p.starts_with(keys::PENDING) || p.starts_with(keys::INBOX))
}

/// Whether a store change may give the reconcile loop work: a desired state or a job changed
/// (or anything may have, on a resync).
pub fn wakes_reconcile(c: &Change) -> bool {
    c.is_resync()
        || c.paths
            .iter()
            .any(|p| p.starts_with(keys::STATES) || p.starts_with(keys::JOBS))
}

/// The services the leader's work runs over.
pub struct Leader<'a> {
    pub store: &'a dyn Store,
    /// The same store, as a handle the collector keeps.
    pub store_handle: &'a DynStore,
    pub jobs: &'a Jobs,
    pub states: &'a Reconciler,
    pub host: &'a dyn Host,
    /// Notified to run a scheduling pass now (a job was submitted, an agent registered).
    pub wake: &'a Notify,
    /// How often the job loop sweeps liveness (and the longest between reconcile ticks).
    pub sweep_every: Duration,
    /// The collector's settings; `None` runs no garbage collection.
    pub gc: Option<&'a RetentionConfig>,
    /// How webhooks are delivered; `None` delivers none.
    pub webhooks: Option<&'a crate::webhooks::DeliveryConfig>,
    /// The schedules to fire; `None` fires none.
    pub schedules: Option<&'a crate::schedule::Schedules>,
}

/// Leader work for one term (`epoch`, led since `since`): the job loop and the reconcile loop.
/// Returns only when a write is fenced, with the epoch in force.
pub async fn work(l: &Leader<'_>, epoch: Epoch, since: Millis) -> Epoch {
    tokio::select! {
        e = job_work(l, epoch, since) => e,
        e = reconcile_work(l, epoch) => e,
        e = gc_work(l, epoch), if l.gc.is_some() => e,
        e = rollout_work(l, epoch) => e,
        e = crate::webhooks::driver::work(l, l.webhooks.unwrap_or(&*NO_WEBHOOKS), epoch),
            if l.webhooks.is_some() => e,
        e = crate::schedule::driver::work(l, epoch), if l.schedules.is_some() => e,
    }
}

/// How often the rollout loop looks at every unfinished rollout even when nothing changed
/// (batch waits, agents going offline).
pub const ROLLOUT_TICK: Duration = Duration::from_millis(250);

/// Whether a store change may give the rollout loop work: a rollout or a job changed (or
/// anything may have, on a resync).
pub fn wakes_rollouts(c: &Change) -> bool {
    c.is_resync()
        || c.paths.iter().any(|p| {
            p.starts_with(keys::ROLLOUTS)
                || p.starts_with(keys::ROLLOUTS_ACTIVE)
                || p.starts_with(keys::JOBS)
        })
}

/// Runs rollout passes on every tick and whenever a rollout or a job changes.
async fn rollout_work(l: &Leader<'_>, epoch: Epoch) -> Epoch {
    let rollouts = crate::rollout::Rollouts::new(l.store_handle.clone(), l.jobs.clone());
    let mut changes = l.store.subscribe();
    let mut tick = tokio::time::interval(ROLLOUT_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Finished rollouts are collected on the collector's interval, after its job retention.
    let gc_every = l.gc.map_or(Duration::from_secs(3600), |c| c.interval);
    let mut gc_tick = tokio::time::interval_at(tokio::time::Instant::now() + gc_every, gc_every);
    gc_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = gc_tick.tick(), if l.gc.is_some() => {
                match rollout_gc_pass(l, &rollouts, epoch).await {
                    Ok(()) => {}
                    Err(StoreError::Fenced { current, .. }) => return current,
                    Err(e) => tracing::warn!(error = %e, "rollout retention pass failed"),
                }
                continue;
            }
            c = changes.recv() => {
                match c {
                    Ok(c) if !wakes_rollouts(&c) => continue,
                    _ => {}
                }
                tokio::time::sleep(RECONCILE_GAP).await;
                while changes.try_recv().is_ok() {}
            }
        }
        match rollout_pass(l, &rollouts, epoch).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "rollout pass failed; retrying"),
        }
    }
}

/// Collects every tenant's rollouts that finished longer ago than its job retention.
pub async fn rollout_gc_pass(
    l: &Leader<'_>,
    rollouts: &crate::rollout::Rollouts,
    epoch: Epoch,
) -> Result<(), StoreError> {
    let Some(cfg) = l.gc else { return Ok(()) };
    for t in &l.jobs.tenants().await.map_err(job_to_store)? {
        let quota = match l.host.quota(t).await {
            Ok(q) => q,
            Err(QuotaError::Store(e)) => return Err(e),
            Err(_) => Quota::default(),
        };
        let keep = cfg.for_tenant(&quota).retention_ms;
        match rollouts.collect(t, keep, epoch, now_ms()).await {
            Ok(_) => {}
            Err(crate::rollout::RolloutError::Store(e @ StoreError::Fenced { .. })) => {
                return Err(e);
            }
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "rollout retention of a tenant failed")
            }
        }
    }
    Ok(())
}

/// One rollout pass over every tenant ([`crate::rollout::Rollouts::pass`]).
pub async fn rollout_pass(
    l: &Leader<'_>,
    rollouts: &crate::rollout::Rollouts,
    epoch: Epoch,
) -> Result<(), StoreError> {
    for t in &l.jobs.tenants().await.map_err(job_to_store)? {
        match rollouts.pass(t, epoch, now_ms()).await {
            Ok(report) => l.host.tally(t, Tally::Rollout(report)),
            Err(crate::rollout::RolloutError::Store(e @ StoreError::Fenced { .. })) => {
                return Err(e);
            }
            Err(e) => tracing::warn!(tenant = %t, error = %e, "rollout pass of a tenant failed"),
        }
    }
    Ok(())
}

/// Runs a garbage-collection pass over every tenant every `--gc-interval`, with a collector
/// (and its per-target counts) of this term.
async fn gc_work(l: &Leader<'_>, epoch: Epoch) -> Epoch {
    let cfg = l.gc.expect("only started with a configuration").clone();
    // The first pass comes one interval into the term, not at once.
    let mut tick =
        tokio::time::interval_at(tokio::time::Instant::now() + cfg.interval, cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut collector = Collector::new(l.store_handle.clone(), cfg);
    loop {
        tick.tick().await;
        // A pass that deleted something is followed at once by the next: a backlog is worked
        // off batch by batch at the store's pace, not one batch per interval (which would cap
        // collection at `--gc-batch` objects per interval, below what a busy tenant creates).
        // Bounded, so that a tick always comes round again.
        for _ in 0..GC_PASSES_PER_TICK {
            match gc_pass(l, &mut collector, epoch).await {
                Ok(true) => tokio::task::yield_now().await,
                Ok(false) => break,
                Err(StoreError::Fenced { current, .. }) => return current,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collection pass failed; retrying");
                    break;
                }
            }
        }
    }
}

static NO_WEBHOOKS: std::sync::LazyLock<crate::webhooks::DeliveryConfig> =
    std::sync::LazyLock::new(crate::webhooks::DeliveryConfig::default);

/// Passes run back to back at most, per `--gc-interval` tick, while they keep deleting.
pub const GC_PASSES_PER_TICK: usize = 10_000;

/// One garbage-collection pass over every tenant (one bounded batch of each kind per tenant);
/// whether it deleted anything.
pub async fn gc_pass(
    l: &Leader<'_>,
    collector: &mut Collector,
    epoch: Epoch,
) -> Result<bool, StoreError> {
    let mut deleted_any = false;
    if let Some(cfg) = l.gc {
        // Events staged in `_system` by a revocation whose call did not finish.
        match crate::events::outbox::drain(l.store, epoch, cfg.batch).await {
            Ok(n) => deleted_any |= n > 0,
            Err(e @ StoreError::Fenced { .. }) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "event outbox unreadable; collecting the rest"),
        }
    }
    for t in &l.jobs.tenants().await.map_err(job_to_store)? {
        let quota = match l.host.quota(t).await {
            Ok(q) => q,
            Err(QuotaError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "quota unreadable; collecting by the flags");
                Quota::default()
            }
        };
        let report = match collector.pass(t, &quota, epoch, now_ms()).await {
            Ok(r) => r,
            Err(e @ StoreError::Fenced { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "garbage collection of a tenant failed");
                continue;
            }
        };
        deleted_any |= report.deleted.by_kind().iter().any(|(_, n)| *n > 0);
        if let Some(cfg) = l.gc {
            match crate::events::collect(l.store, t, epoch, cfg.events, cfg.batch, now_ms()).await {
                Ok(n) => deleted_any |= n > 0,
                Err(crate::events::EventError::Store(e @ StoreError::Fenced { .. })) => {
                    return Err(e);
                }
                Err(e) => tracing::warn!(tenant = %t, error = %e, "event log collection failed"),
            }
        }
        for j in &report.jobs {
            l.host.collected(t, j);
        }
        l.host.tally(
            t,
            Tally::Gc {
                deleted: report.deleted,
                conflicts: report.conflicts,
            },
        );
    }
    Ok(deleted_any)
}

/// Runs reconcile passes on every tick and whenever a state or a job the reconciler waits for
/// changes ([`Reconciler::concerns`]).
async fn reconcile_work(l: &Leader<'_>, epoch: Epoch) -> Epoch {
    let mut changes = l.store.subscribe();
    let mut tick = tokio::time::interval(RECONCILE_TICK.min(l.sweep_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            c = changes.recv() => {
                match c {
                    Ok(c) if !(wakes_reconcile(&c) && l.states.concerns(&c)) => continue,
                    _ => {}
                }
                // Under a stream of job updates, passes run at most every RECONCILE_GAP; what
                // changed meanwhile is covered by the next pass.
                tokio::time::sleep(RECONCILE_GAP).await;
                while changes.try_recv().is_ok() {}
            }
        }
        match reconcile_pass(l, epoch).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed; retrying"),
        }
    }
}

/// One reconcile pass over every tenant.
pub async fn reconcile_pass(l: &Leader<'_>, epoch: Epoch) -> Result<(), StoreError> {
    for t in &l.jobs.tenants().await.map_err(job_to_store)? {
        // One tenant's trouble (a corrupt record, say) must not stop the others.
        let tally = match l
            .states
            .pass(t, epoch, now_ms())
            .await
            .map_err(state_to_store)
        {
            Ok(tally) => tally,
            Err(e @ StoreError::Fenced { .. }) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "reconcile pass of a tenant failed");
                continue;
            }
        };
        l.host.tally(t, Tally::Reconcile(tally));
    }
    Ok(())
}

/// Runs job passes on every sweep tick (with a liveness sweep), when woken, and whenever a
/// pending job or an inbox changes.
async fn job_work(l: &Leader<'_>, epoch: Epoch, since: Millis) -> Epoch {
    let mut changes = l.store.subscribe();
    // The scheduler's views of this term, built afresh on each election.
    let mut indexes = l.jobs.scheduler_indexes();
    // Where this term's migration of un-indexed jobs stands.
    let mut backfill = IndexBackfill::default();
    let mut tick = tokio::time::interval(l.sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep = tokio::select! {
            _ = tick.tick() => true,
            _ = l.wake.notified() => false,
            c = changes.recv() => {
                match c {
                    Ok(c) if !wakes_job_work(&c) => continue,
                    _ => {}
                }
                // Drain what queued up meanwhile: one pass covers it all.
                while changes.try_recv().is_ok() {}
                false
            }
        };
        match job_pass(l, &mut indexes, &mut backfill, epoch, since, sweep).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "leader pass failed; retrying"),
        }
    }
}

/// One leader pass over every tenant: liveness sweep (when `sweep`), requeue, scheduling (from
/// the term's `indexes`). With each sweep, one bounded batch of the migration that indexes jobs
/// stored before the listing indexes existed, until the tenant is marked indexed.
pub async fn job_pass(
    l: &Leader<'_>,
    indexes: &mut Indexes,
    backfill: &mut IndexBackfill,
    epoch: Epoch,
    since: Millis,
    sweep: bool,
) -> Result<(), StoreError> {
    for t in &l.jobs.tenants().await.map_err(job_to_store)? {
        if sweep && !backfill.is_done(t) {
            match l
                .jobs
                .backfill_index(backfill, t, epoch, BACKFILL_BATCH)
                .await
                .map_err(job_to_store)
            {
                Ok(_) => {}
                Err(e @ StoreError::Fenced { .. }) => return Err(e),
                // Listing without a filter does not need the indexes; scheduling goes on.
                Err(e) => tracing::warn!(tenant = %t, error = %e, "job index migration failed"),
            }
        }
        if sweep {
            // Judged on the term's view of the fleet, read fresh from the change stream: no
            // read of every agent record per sweep.
            let ix = l.jobs.fresh_index(indexes, t).await.map_err(job_to_store)?;
            let agents = ix.fleet().by_state();
            let r = l
                .jobs
                .sweep_tenant_in(t, epoch, now_ms(), since, ix)
                .await
                .map_err(job_to_store)?;
            l.host.tally(
                t,
                Tally::Sweep {
                    requeued: r.requeued as u64,
                    agents,
                },
            );
        }
        let max_running = match l.host.quota(t).await {
            Ok(q) => q.max_running,
            Err(QuotaError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "quota unreadable; scheduling without it");
                None
            }
        };
        let r = l
            .jobs
            .schedule_indexed(indexes, t, epoch, now_ms(), max_running)
            .await
            .map_err(job_to_store)?;
        if r.conflicts > 0 {
            // The jobs that lost a race are still queued, and what they raced on is re-read:
            // the next pass runs at once rather than on the next tick.
            l.wake.notify_one();
        }
    }
    Ok(())
}

/// A job-service error as the store error the loops act on (a fence, or a failure to log).
pub fn job_to_store(e: JobError) -> StoreError {
    match e {
        JobError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

fn state_to_store(e: StateError) -> StoreError {
    match e {
        StateError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(paths: &[&str]) -> Change {
        Change {
            tenant: "acme".into(),
            revision: 7,
            paths: paths.iter().map(|p| p.to_string()).collect(),
            deleted: Vec::new(),
        }
    }

    #[test]
    fn each_loop_wakes_for_its_own_changes_and_on_resync() {
        for (paths, jobs, reconcile) in [
            (&["pending/0001"][..], true, false),
            (&["inbox/n1/j.1"][..], true, false),
            (&["states/web"][..], false, true),
            (&["jobs/j"][..], false, true),
            (&["agents/n1"][..], false, false),
            (&["output/j.1.0", "jobs/j"][..], false, true),
            (&["agents/n1", "pending/0002"][..], true, false),
        ] {
            let c = change(paths);
            assert_eq!(wakes_job_work(&c), jobs, "{paths:?}");
            assert_eq!(wakes_reconcile(&c), reconcile, "{paths:?}");
        }
        assert!(wakes_job_work(&Change::resync()));
        assert!(wakes_reconcile(&Change::resync()));
    }
}
