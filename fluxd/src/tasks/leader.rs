//! The leader driver: takes part in the lease election and, while this node holds the lease,
//! runs the leader's work (liveness sweeps, requeues, scheduling, reconcile passes), publishing
//! this node's leadership and the passes' tallies as metrics.

use std::sync::Arc;
use std::time::Duration;

use flux_core::lease::{self, LeaseConfig};
use flux_core::model::now_ms;
use flux_core::store::StoreError;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::to_store;
use crate::state::AppState;

/// One leader pass over every tenant: liveness sweep, requeue, scheduling.
async fn leader_pass(st: &AppState, epoch: u64, since: u64, sweep: bool) -> Result<(), StoreError> {
    for t in &st.jobs.tenants().await.map_err(to_store)? {
        if sweep {
            let r = st
                .jobs
                .sweep_tenant(t, epoch, now_ms(), since)
                .await
                .map_err(to_store)?;
            st.metrics.requeued.inc_by(r.requeued as u64);
        }
        let max_running = match st.quota(t).await {
            Ok(q) => q.max_running,
            Err(flux_core::quota::QuotaError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %t, error = %e, "quota unreadable; scheduling without it");
                None
            }
        };
        st.jobs
            .schedule_tenant(t, epoch, now_ms(), max_running)
            .await
            .map_err(to_store)?;
    }
    Ok(())
}

fn state_to_store(e: flux_core::reconcile::StateError) -> StoreError {
    match e {
        flux_core::reconcile::StateError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Takes part in the leader election until `cancel`, running leader work (liveness sweeps,
/// requeues, scheduling) while this node holds the lease. Leader work stops as soon as the
/// lease could have lapsed or a write is fenced; on `cancel` the lease is released so another
/// node takes over at once.
pub async fn run_leader(
    st: Arc<AppState>,
    cancel: CancellationToken,
    sweep_every: Duration,
    lease_cfg: LeaseConfig,
    ignore_lease: bool,
) {
    let (fenced_tx, fenced_rx) = watch::channel(0u64);
    let lease_cancel = CancellationToken::new();
    // The lease holder names this process, not only the node: a node restarted under the same
    // id is a new holder and must take a new term (and epoch) like any other node.
    let holder = format!("{}/{:08x}", st.node_id, rand::random::<u32>());
    let (mut leadership, driver) = lease::spawn(
        st.store.clone(),
        holder,
        lease_cfg,
        lease_cancel.clone(),
        fenced_rx,
    );
    loop {
        let current = *leadership.borrow_and_update();
        match current {
            None => {
                st.set_leader(None);
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    r = leadership.changed() => if r.is_err() { break },
                }
            }
            Some(epoch) => {
                st.set_leader(Some(epoch));
                let since = st.leader.snapshot().since;
                tracing::info!(node = %st.node_id, epoch, "leading");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    // Testing only (--unsafe-ignore-lease): losing the lease does not stop
                    // leader work; only a fenced write does.
                    r = leadership.changed(), if !ignore_lease => {
                        tracing::info!(node = %st.node_id, epoch, "leader work stops: leadership changed");
                        if r.is_err() { break }
                    }
                    fenced = leader_work(&st, epoch, since, sweep_every) => {
                        tracing::error!(
                            node = %st.node_id,
                            epoch,
                            current = fenced,
                            "a write was fenced: another node holds a newer epoch; stopping leader work"
                        );
                        st.metrics.fenced.inc();
                        st.set_leader(None);
                        let _ = fenced_tx.send(epoch);
                        // Wait for the driver to register the step-down before looking again.
                        tokio::select! {
                            _ = cancel.cancelled() => break,
                            r = leadership.changed() => if r.is_err() { break },
                        }
                    }
                }
            }
        }
    }
    st.set_leader(None);
    lease_cancel.cancel();
    let _ = driver.await;
}

/// Leader work for one term: the job loop and the reconcile loop. Returns only when a write is
/// fenced, with the epoch in force.
async fn leader_work(st: &AppState, epoch: u64, since: u64, sweep_every: Duration) -> u64 {
    tokio::select! {
        e = job_work(st, epoch, since, sweep_every) => e,
        e = reconcile_work(st, epoch, sweep_every) => e,
    }
}

/// How often the reconciler looks at every target even when nothing changed (due checks).
const RECONCILE_TICK: Duration = Duration::from_millis(500);
/// Least time between two passes started by changes.
const RECONCILE_GAP: Duration = Duration::from_millis(20);

/// Runs reconcile passes on every tick and whenever a state or a job changes.
async fn reconcile_work(st: &AppState, epoch: u64, sweep_every: Duration) -> u64 {
    let mut changes = st.store.subscribe();
    let mut tick = tokio::time::interval(RECONCILE_TICK.min(sweep_every));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            c = changes.recv() => {
                match c {
                    Ok(c) if !(c.is_resync() || c.paths.iter().any(|p| p.starts_with("states/") || p.starts_with("jobs/"))) => continue,
                    _ => {}
                }
                // Under a stream of job updates, passes run at most every RECONCILE_GAP; what
                // changed meanwhile is covered by the next pass.
                tokio::time::sleep(RECONCILE_GAP).await;
                while changes.try_recv().is_ok() {}
            }
        }
        match reconcile_pass(st, epoch).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "reconcile pass failed; retrying"),
        }
    }
}

async fn reconcile_pass(st: &AppState, epoch: u64) -> Result<(), StoreError> {
    for t in &st.jobs.tenants().await.map_err(to_store)? {
        // One tenant's trouble (a corrupt record, say) must not stop the others.
        let tally = match st
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
        let m = &st.metrics;
        m.reconcile_checks.inc_by(tally.checks);
        m.reconcile_drift.inc_by(tally.drifts);
        m.reconcile_repairs.inc_by(tally.repairs);
        m.reconcile_failures.inc_by(tally.failures);
    }
    Ok(())
}

async fn job_work(st: &AppState, epoch: u64, since: u64, sweep_every: Duration) -> u64 {
    let mut changes = st.store.subscribe();
    let mut tick = tokio::time::interval(sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep = tokio::select! {
            _ = tick.tick() => true,
            _ = st.scheduler_wakeups().notified() => false,
            c = changes.recv() => {
                match c {
                    Ok(c) if !(c.is_resync() || c.paths.iter().any(|p| p.starts_with("pending/") || p.starts_with("inbox/"))) => continue,
                    _ => {}
                }
                // Drain what queued up meanwhile: one pass covers it all.
                while changes.try_recv().is_ok() {}
                false
            }
        };
        match leader_pass(st, epoch, since, sweep).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "leader pass failed; retrying"),
        }
    }
}
