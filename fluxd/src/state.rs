//! The shared state of a fluxd node ([`AppState`]): its store and the flux-core services over
//! it, the tenant quota cache, and what the node knows about its own leadership
//! ([`NodeLeadership`]). Handlers and background tasks read it; no loop lives here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use flux_core::auth::{self, AuthError, Authenticator};
use flux_core::jobs::Jobs;
use flux_core::model::now_ms;
use flux_core::reconcile::Reconciler;
use flux_core::store::DynStore;
use tokio::sync::Notify;

use crate::metrics::Metrics;

/// What this node knows about its own leadership (not the lease itself, which
/// `flux_core::lease` drives).
#[derive(Default)]
pub struct NodeLeadership {
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

impl NodeLeadership {
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
    /// Schedules (the service; the leader fires them).
    pub schedules: flux_core::schedule::Schedules,
    pub audit: flux_core::audit::Audit,
    /// Submission rate buckets per tenant (quotas), in this node.
    pub rates: flux_core::quota::RateLimiter,
    /// Quotas read recently, so admission and scheduling do not read the store every time.
    quotas: std::sync::Mutex<
        std::collections::HashMap<String, (flux_core::quota::Quota, std::time::Instant)>,
    >,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    pub leader: NodeLeadership,
    /// Agents' task polls waiting on this node, woken when their inbox changes.
    pub inboxes: Arc<crate::inboxes::Inboxes>,
    /// Job waits and log follows open on this node, woken when their own job changes.
    pub job_waiters: Arc<crate::waiters::JobWaiters>,
    /// The revoked tokens, held in memory and kept current from the store's change notices
    /// (`flux_core::revocations::follow`, started by `node::run`).
    pub revocations: Arc<flux_core::revocations::RevocationCache>,
    scheduler: Notify,
    /// Wakes the node record writer when leadership changes.
    node_changed: Notify,
    /// The chaos-run history log, when enabled.
    pub history: Option<Arc<crate::history::History>>,
    /// Longest a followed log stream lasts (`--max-follow`).
    pub max_follow: std::time::Duration,
    /// Revisions a followed event stream may fall behind (`--events-max-lag`).
    pub events_max_lag: u64,
    /// How webhooks are delivered (`--webhook-allow-private`, `--webhook-timeout`).
    pub webhooks: flux_core::webhooks::DeliveryConfig,
    /// Lifetime of enrolled and renewed agent credentials (`--agent-credential-ttl`).
    pub agent_credential_ttl: std::time::Duration,
    /// Free space under the embedded store (`--min-free-disk`).
    pub disk: Option<crate::disk::DiskGuard>,
    /// Submissions wait while a tenant's collector is further behind than this
    /// (`--gc-max-lag`; `None`: never).
    pub gc_max_lag: Option<std::time::Duration>,
    /// When each tenant's collector fell behind (`gc/state.behind_since`), read recently.
    #[allow(clippy::type_complexity)]
    gc_behind: std::sync::Mutex<
        std::collections::HashMap<String, (Option<flux_core::model::Millis>, std::time::Instant)>,
    >,
    /// Each tenant's agents online, unreachable and dead, as this node's last liveness sweep
    /// counted them on its view of the fleet (while it leads), and when, for the gauges.
    #[allow(clippy::type_complexity)]
    swept: std::sync::Mutex<std::collections::HashMap<String, ([u64; 3], std::time::Instant)>>,
}

impl AppState {
    pub fn new(
        node_id: String,
        store: DynStore,
        jobs: Jobs,
        auth: Authenticator,
        metrics: Arc<Metrics>,
        audit_key: [u8; 32],
        history: Option<Arc<crate::history::History>>,
    ) -> AppState {
        AppState {
            node_id,
            states: Reconciler::new(store.clone(), jobs.clone()),
            schedules: flux_core::schedule::Schedules::new(
                store.clone(),
                jobs.clone(),
                flux_core::schedule::DEFAULT_MIN_INTERVAL_MS,
            ),
            audit: flux_core::audit::Audit::start(store.clone(), audit_key),
            rates: Default::default(),
            quotas: Default::default(),
            store,
            jobs,
            auth,
            metrics,
            leader: NodeLeadership::default(),
            inboxes: Arc::default(),
            job_waiters: Arc::default(),
            revocations: Arc::default(),
            scheduler: Notify::new(),
            node_changed: Notify::new(),
            history,
            max_follow: std::time::Duration::from_secs(3600),
            events_max_lag: crate::api::events::DEFAULT_MAX_LAG,
            webhooks: flux_core::webhooks::DeliveryConfig::default(),
            agent_credential_ttl: std::time::Duration::from_secs(24 * 3600),
            disk: None,
            gc_max_lag: None,
            gc_behind: Default::default(),
            swept: Default::default(),
        }
    }

    /// Notes a tenant's agents by state as a liveness sweep counted them.
    pub fn swept_agents(&self, tenant: &str, agents: [u64; 3]) {
        self.swept
            .lock()
            .expect("swept agents")
            .insert(tenant.to_string(), (agents, std::time::Instant::now()));
    }

    /// A tenant's agents by state as this node's last sweep counted them, if that was within
    /// `fresh` (`None` before its first sweep of the tenant since it last led, or while its
    /// sweeps fail).
    pub fn swept_agents_of(&self, tenant: &str, fresh: std::time::Duration) -> Option<[u64; 3]> {
        let swept = self.swept.lock().expect("swept agents");
        let (counts, at) = swept.get(tenant)?;
        (at.elapsed() < fresh).then_some(*counts)
    }

    /// Forgets the sweeps' counts (this node no longer leads).
    pub fn forget_swept_agents(&self) {
        self.swept.lock().expect("swept agents").clear();
    }

    /// Whether the token `jti` of `tenant` is revoked: from memory, or from the store while
    /// memory cannot be trusted (before its first load, or while the change stream is in doubt
    /// and no reload has succeeded for a second).
    pub async fn is_revoked(&self, tenant: &str, jti: &str) -> Result<bool, AuthError> {
        match self.revocations.check(tenant, jti) {
            Some(revoked) => Ok(revoked),
            None => auth::is_revoked(self.store.as_ref(), tenant, jti).await,
        }
    }

    /// Whether `claims` are refused by a revocation: of the token itself, or of every
    /// credential of its agent issued before a `fluxctl agents revoke`. From memory, or from the
    /// store while memory cannot be trusted.
    pub async fn is_refused(&self, claims: &flux_core::auth::Claims) -> Result<bool, AuthError> {
        if self.is_revoked(&claims.tenant, &claims.jti).await? {
            return Ok(true);
        }
        let Some(node) = claims.node_id.as_deref() else {
            return Ok(false);
        };
        let not_before = match self.revocations.check_node(&claims.tenant, node) {
            Some(nb) => nb,
            None => auth::node_not_before(self.store.as_ref(), &claims.tenant, node).await?,
        };
        Ok(auth::refused_by_node(claims, not_before))
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

    /// Since when a tenant's collector has been behind (`gc/state.behind_since`; `None`
    /// without a readable record), at most [`QUOTA_CACHE`] old. Read only when `--gc-max-lag`
    /// is on.
    pub async fn gc_behind_since(
        &self,
        tenant: &str,
    ) -> Result<Option<flux_core::model::Millis>, flux_core::store::StoreError> {
        let now = std::time::Instant::now();
        if let Some((since, at)) = self.gc_behind.lock().expect("gc cache").get(tenant)
            && now.duration_since(*at) < QUOTA_CACHE
        {
            return Ok(*since);
        }
        let k = flux_core::store::Key::new(tenant, flux_core::keys::GC_STATE)?;
        let since = self.store.get(&k).await?.and_then(|v| {
            match serde_json::from_slice::<flux_core::retention::GcState>(&v.value) {
                Ok(s) => s.behind_since,
                // Admission goes on as if the collector kept up; the collector starts afresh
                // from an unreadable state at its next pass that writes. Said at most once per
                // cache period (a second) and tenant, not per request.
                Err(e) => {
                    tracing::warn!(tenant, error = %e, "collector state unreadable; taken as not behind");
                    None
                }
            }
        });
        self.gc_behind
            .lock()
            .expect("gc cache")
            .insert(tenant.to_string(), (since, now));
        Ok(since)
    }

    /// Forgets a cached quota (after this node changed it).
    pub fn forget_quota(&self, tenant: &str) {
        self.quotas.lock().expect("quota cache").remove(tenant);
    }

    /// Asks the leader loop (if this node leads) to run a scheduling pass now.
    pub fn wake_scheduler(&self) {
        self.scheduler.notify_one();
    }

    /// What [`AppState::wake_scheduler`] wakes: the leader's job loop waits on it.
    pub fn scheduler_wakeups(&self) -> &Notify {
        &self.scheduler
    }

    /// Notified when this node starts or stops leading (the node record writer waits on it).
    pub fn node_changed(&self) -> &Notify {
        &self.node_changed
    }

    /// Publishes this node's leadership (`None`: not leading) to the status and the metrics.
    pub fn set_leader(&self, epoch: Option<u64>) {
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
