//! Shared state of a fluxd node and its leader loop.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flux_core::auth::{self, AuthError, Authenticator};
use flux_core::jobs::Jobs;
use flux_core::lease::{self, LeaseConfig};
use flux_core::model::{AgentState, now_ms};
use flux_core::reconcile::{Reconciler, TargetState};
use flux_core::store::{DynStore, Expect, Key, SYSTEM_TENANT, StoreError};
use tokio::sync::{Notify, watch};
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
    pub states: Reconciler,
    pub audit: flux_core::audit::Audit,
    /// Submission rate buckets per tenant (quotas), in this node.
    pub rates: flux_core::quota::RateLimiter,
    /// Quotas read recently, so admission and scheduling do not read the store every time.
    quotas: std::sync::Mutex<
        std::collections::HashMap<String, (flux_core::quota::Quota, std::time::Instant)>,
    >,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub leader: Leadership,
    /// Agents' task polls waiting on this node, woken when their inbox changes.
    pub inboxes: Arc<crate::inboxes::Inboxes>,
    scheduler: Notify,
    /// Wakes the node record writer when leadership changes.
    node_changed: Notify,
    /// The chaos-run history log, when enabled.
    pub history: Option<Arc<crate::history::History>>,
}

impl AppState {
    pub fn new(
        node_id: String,
        store: DynStore,
        jobs: Jobs,
        auth: Authenticator,
        metrics: Metrics,
        audit_key: [u8; 32],
        history: Option<Arc<crate::history::History>>,
    ) -> AppState {
        AppState {
            node_id,
            states: Reconciler::new(store.clone(), jobs.clone()),
            audit: flux_core::audit::Audit::start(store.clone(), audit_key),
            rates: Default::default(),
            quotas: Default::default(),
            store,
            jobs,
            auth,
            metrics,
            leader: Leadership::default(),
            inboxes: Arc::default(),
            scheduler: Notify::new(),
            node_changed: Notify::new(),
            history,
        }
    }

    pub async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, AuthError> {
        auth::is_revoked(self.store.as_ref(), tenant, jti).await
    }

    /// A tenant's quota, at most [`QUOTA_CACHE`] old (a change made through this node is seen
    /// at once; through another node within that time).
    pub async fn quota(
        &self,
        tenant: &str,
    ) -> Result<flux_core::quota::Quota, flux_core::quota::QuotaError> {
        let now = std::time::Instant::now();
        if let Some((q, at)) = self.quotas.lock().expect("quota cache").get(tenant)
            && now.duration_since(*at) < QUOTA_CACHE
        {
            return Ok(q.clone());
        }
        let (q, _) = flux_core::quota::get(self.store.as_ref(), tenant).await?;
        self.quotas
            .lock()
            .expect("quota cache")
            .insert(tenant.to_string(), (q.clone(), now));
        Ok(q)
    }

    /// Forgets a cached quota (after this node changed it).
    pub fn forget_quota(&self, tenant: &str) {
        self.quotas.lock().expect("quota cache").remove(tenant);
    }

    /// Asks the leader loop (if this node leads) to run a scheduling pass now.
    pub fn wake_scheduler(&self) {
        self.scheduler.notify_one();
    }

    fn set_leader(&self, epoch: Option<u64>) {
        let m = &self.metrics;
        if self.leader.snapshot().is_leader != epoch.is_some() {
            self.node_changed.notify_one();
        }
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

/// How long a quota read from the store is used before it is read again.
pub const QUOTA_CACHE: Duration = Duration::from_secs(1);

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

/// Sets the cluster gauges (agents by state, queue depth) from the store, so that every node
/// reports the same figures whichever of them a scrape reaches.
pub async fn refresh_gauges(st: &AppState) -> Result<(), StoreError> {
    let mut queued = 0i64;
    let mut by_state = [0i64; 3];
    let mut targets: std::collections::BTreeMap<TargetState, i64> = Default::default();
    for t in &st.jobs.tenants().await.map_err(to_store)? {
        match st.states.counts(t).await {
            Ok(c) => {
                for (s, n) in c {
                    *targets.entry(s).or_default() += n as i64;
                }
            }
            Err(e) => tracing::warn!(tenant = %t, error = %e, "cannot count state targets"),
        }
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
    for s in TargetState::ALL {
        st.metrics
            .state_targets
            .with_label_values(&[s.as_str()])
            .set(targets.get(&s).copied().unwrap_or(0));
    }
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

fn state_to_store(e: flux_core::reconcile::StateError) -> StoreError {
    match e {
        flux_core::reconcile::StateError::Store(s) => s,
        other => StoreError::Corrupt(other.to_string()),
    }
}

/// What a node records about itself in the store, so every node can show the cluster.
#[derive(serde::Serialize, serde::Deserialize, Clone, Debug)]
pub struct NodeRecord {
    pub node_id: String,
    pub version: String,
    pub started_at: u64,
    pub last_seen: u64,
    pub leader: bool,
    pub epoch: u64,
}

/// How often a node refreshes its record; a record older than three periods is shown as gone.
pub const NODE_REFRESH: Duration = Duration::from_secs(2);

fn node_key(node: &str) -> Result<Key, StoreError> {
    Key::new(SYSTEM_TENANT, format!("nodes/{node}"))
}

/// Writes this node's record every [`NODE_REFRESH`] until `cancel`, then removes it.
pub async fn run_node_record(st: Arc<AppState>, cancel: CancellationToken) {
    let started_at = now_ms();
    let Ok(key) = node_key(&st.node_id) else {
        tracing::warn!(node = %st.node_id, "node id cannot be recorded in the store");
        return;
    };
    loop {
        let l = st.leader.snapshot();
        let rec = NodeRecord {
            node_id: st.node_id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            last_seen: now_ms(),
            leader: l.is_leader,
            epoch: l.epoch,
        };
        let body = serde_json::to_vec(&rec).expect("node record serialises");
        if let Err(e) = st.store.put(key.clone(), body, Expect::Any).await {
            tracing::debug!(error = %e, "node record not written");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(NODE_REFRESH) => {}
            _ = st.node_changed.notified() => {}
        }
    }
    let _ = st.store.delete(key, Expect::Any).await;
}

/// Nodes whose records are fresh.
pub async fn live_nodes(st: &AppState) -> Result<Vec<NodeRecord>, StoreError> {
    let horizon = now_ms().saturating_sub(3 * NODE_REFRESH.as_millis() as u64);
    let mut out: Vec<NodeRecord> = st
        .store
        .list(SYSTEM_TENANT, "nodes/")
        .await?
        .into_iter()
        .filter_map(|e| serde_json::from_slice::<NodeRecord>(&e.value).ok())
        .filter(|n| n.last_seen >= horizon)
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    Ok(out)
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
            _ = st.scheduler.notified() => false,
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
