//! The leader driver: takes part in the lease election and, while this node holds the lease,
//! runs `flux_core::leader::work` (liveness sweeps, requeues, scheduling, reconcile passes),
//! publishing this node's leadership and the passes' tallies as metrics. What the work does and
//! which changes wake it is flux-core's; this file only starts and stops it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flux_core::leader::{self, Tally};
use flux_core::lease::{self, LeaseConfig};
use flux_core::model::Job;
use flux_core::quota::{Quota, QuotaError};
use flux_core::retention::RetentionConfig;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// What flux_core's leader work asks of this node: its cached quotas, and its metrics for the
/// passes' tallies.
#[async_trait]
impl leader::Host for AppState {
    async fn quota(&self, tenant: &str) -> Result<Quota, QuotaError> {
        AppState::quota(self, tenant).await
    }

    fn tally(&self, tenant: &str, tally: Tally) {
        let m = &self.metrics;
        match tally {
            Tally::Sweep { requeued, agents } => {
                m.requeued.inc_by(requeued);
                self.swept_agents(tenant, agents);
            }
            Tally::Reconcile(t) => {
                m.reconcile_checks.inc_by(t.checks);
                m.reconcile_drift.inc_by(t.drifts);
                m.reconcile_repairs.inc_by(t.repairs);
                m.reconcile_failures.inc_by(t.failures);
                m.reconcile_deferred.inc_by(t.deferred);
                m.reconcile_held.inc_by(t.held);
            }
            Tally::Schedule {
                fired,
                missed,
                skipped,
            } => {
                m.schedule_fires.inc_by(fired);
                m.schedule_missed.inc_by(missed);
                m.schedule_skipped.inc_by(skipped);
            }
            Tally::Gc { deleted, conflicts } => {
                for (kind, n) in deleted.by_kind() {
                    if n > 0 {
                        m.gc_deleted.with_label_values(&[kind]).inc_by(n);
                    }
                }
                m.gc_conflicts.inc_by(conflicts);
            }
            Tally::Rollout(r) => {
                for s in r.finished {
                    m.rollouts.with_label_values(&[s.as_str()]).inc();
                }
                for s in r.ended {
                    m.rollout_targets.with_label_values(&[s.as_str()]).inc();
                }
            }
        }
    }

    fn webhook_delivery(&self, _tenant: &str, result: &str) {
        self.metrics
            .webhook_deliveries
            .with_label_values(&[result])
            .inc();
    }

    fn schedule_fired(&self, _tenant: &str, lag: Duration) {
        self.metrics.schedule_lag.observe(lag.as_secs_f64());
    }

    fn collected(&self, tenant: &str, job: &Job) {
        if let Some(h) = &self.history {
            h.collected(tenant, job);
        }
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
    gc: RetentionConfig,
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
    let work = leader::Leader {
        store: st.store.as_ref(),
        store_handle: &st.store,
        jobs: &st.jobs,
        states: &st.states,
        host: st.as_ref(),
        wake: st.scheduler_wakeups(),
        sweep_every,
        gc: Some(&gc),
        webhooks: Some(&st.webhooks),
        schedules: Some(&st.schedules),
    };
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
                    fenced = leader::work(&work, epoch, since) => {
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
