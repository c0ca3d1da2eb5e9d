//! Shared state of a fluxd node and its leader loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flux_core::auth::{self, AuthError, Authenticator};
use flux_core::jobs::Jobs;
use flux_core::model::{AgentState, now_ms};
use flux_core::store::{DynStore, StoreError};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// What this node knows about its own leadership.
#[derive(Default)]
pub struct Leadership {
    is_leader: AtomicBool,
    epoch: AtomicU64,
    since: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
pub struct LeaderSnapshot {
    pub is_leader: bool,
    pub epoch: u64,
    pub since: u64,
}

impl Leadership {
    pub fn snapshot(&self) -> LeaderSnapshot {
        LeaderSnapshot {
            is_leader: self.is_leader.load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
            since: self.since.load(Ordering::SeqCst),
        }
    }
}

pub struct AppState {
    pub node_id: String,
    pub store: DynStore,
    pub jobs: Jobs,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub leader: Leadership,
    scheduler: Notify,
}

impl AppState {
    pub fn new(node_id: String, store: DynStore, jobs: Jobs, auth: Authenticator) -> AppState {
        AppState {
            node_id,
            store,
            jobs,
            auth,
            metrics: Metrics::new(),
            leader: Leadership::default(),
            scheduler: Notify::new(),
        }
    }

    pub async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, AuthError> {
        auth::is_revoked(self.store.as_ref(), tenant, jti).await
    }

    /// Asks the leader loop (if this node leads) to run a scheduling pass now.
    pub fn wake_scheduler(&self) {
        self.scheduler.notify_one();
    }

    fn set_leader(&self, epoch: Option<u64>) {
        let m = &self.metrics;
        match epoch {
            Some(e) => {
                self.leader.epoch.store(e, Ordering::SeqCst);
                self.leader.since.store(now_ms(), Ordering::SeqCst);
                self.leader.is_leader.store(true, Ordering::SeqCst);
                m.leader_status.set(1);
                m.leader_epoch.set(e as i64);
            }
            None => {
                self.leader.is_leader.store(false, Ordering::SeqCst);
                self.leader.epoch.store(0, Ordering::SeqCst);
                m.leader_status.set(0);
                m.leader_epoch.set(0);
            }
        }
    }
}

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
        st.jobs
            .schedule_tenant(t, epoch, now_ms())
            .await
            .map_err(to_store)?;
    }
    Ok(())
}

/// Sets the cluster gauges (agents by state, queue depth) from the store, so that every node
/// reports the same figures whichever of them a scrape reaches.
pub async fn refresh_gauges(st: &AppState) -> Result<(), StoreError> {
    let mut queued = 0i64;
    let mut by_state = [0i64; 3];
    for t in &st.jobs.tenants().await.map_err(to_store)? {
        for a in st.jobs.agents(t).await.map_err(to_store)? {
            by_state[match a.state {
                AgentState::Online => 0,
                AgentState::Unreachable => 1,
                AgentState::Dead => 2,
            }] += 1;
        }
        queued += st.jobs.queue_depth(t).await.map_err(to_store)? as i64;
    }
    st.metrics.queue_depth.set(queued);
    st.metrics.connected_agents.set(by_state[0]);
    for (i, s) in [
        AgentState::Online,
        AgentState::Unreachable,
        AgentState::Dead,
    ]
    .iter()
    .enumerate()
    {
        st.metrics
            .agents_by_state
            .with_label_values(&[s.as_str()])
            .set(by_state[i]);
    }
    Ok(())
}

fn to_store(e: flux_core::jobs::JobError) -> StoreError {
    match e {
        flux_core::jobs::JobError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// Runs leader work until `cancel`. The embedded store has one node, which always leads; it takes
/// a fresh fencing epoch at start so that writes of any earlier process on the same data are
/// fenced. A fenced write means another node took a newer epoch: this node stops leader work.
pub async fn run_leader(st: Arc<AppState>, cancel: CancellationToken, sweep_every: Duration) {
    let epoch = loop {
        match st.store.next_epoch().await {
            Ok(e) => break e,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a leader epoch; retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    st.set_leader(Some(epoch));
    let since = st.leader.snapshot().since;
    tracing::info!(node = %st.node_id, epoch, "leading");
    let mut changes = st.store.subscribe();
    let mut tick = tokio::time::interval(sweep_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let sweep = tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => true,
            _ = st.scheduler.notified() => false,
            c = changes.recv() => {
                match c {
                    Ok(c) if !(c.is_resync() || c.paths.iter().any(|p| p.starts_with("pending/") || p.starts_with("agents/") || p.starts_with("inbox/"))) => continue,
                    _ => {}
                }
                // Drain what queued up meanwhile: one pass covers it all.
                while changes.try_recv().is_ok() {}
                false
            }
        };
        match leader_pass(&st, epoch, since, sweep).await {
            Ok(()) => {}
            Err(StoreError::Fenced { presented, current }) => {
                tracing::error!(
                    presented,
                    current,
                    "another node holds a newer epoch; stopping leader work"
                );
                st.set_leader(None);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "leader pass failed; retrying"),
        }
    }
    st.set_leader(None);
}
