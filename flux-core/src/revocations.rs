//! Token revocations held in memory, so that checking a token reads no store.
//!
//! Every node keeps the revoked token ids (`_system/revoked/<tenant>/<jti>`) in a
//! [`RevocationCache`]: loaded in full at start, then kept current by the store's change notices
//! ([`follow`]), and re-read in full after a resync or a lagged receiver. A node that revokes a
//! token puts it in its own cache before answering; the others learn it from the change stream,
//! within the time a notice takes to arrive (milliseconds).
//!
//! Guarantees:
//! - A check ([`RevocationCache::check`]) never waits on the store. It answers from memory only
//!   while memory can be trusted, and otherwise says so (`None`), and the caller reads the store.
//! - Memory is trusted while the change subscription is known to be live, or for at most
//!   [`MAX_DOUBT`] (1 s) after the start of the last full load that succeeded. A resync (sent
//!   by a backend whose subscription was lost, and again when it is back) or a lag puts the
//!   cache in doubt; it leaves doubt only once a full load started after the resync has
//!   succeeded and an ordinary notice has arrived since the resync (proof that the
//!   subscription is connected again: a backend sends no notice on a lost subscription after
//!   the resync that reports the loss). While in doubt [`follow`] reloads every
//!   [`RELOAD_EVERY`] (250 ms), so a revocation made elsewhere during a disconnection is seen
//!   within about that time, and if the store cannot be read at all the cache stops being
//!   trusted after [`MAX_DOUBT`], and every check falls back to the store.
//! - Revocations are never withdrawn (a restore keeps the store's revocations, and nothing
//!   deletes one), so a reload only adds to memory; an entry leaves memory once its token has
//!   expired, because an expired token is refused anyway.
//!
//! Not covered: a subscription that stops delivering without its connection being reported
//! lost (a half-open TCP connection) is trusted until the backend notices.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::auth::AuthError;
use crate::keys::REVOKED;
use crate::model::now_ms;
use crate::store::{Change, DynStore, Key, SYSTEM_TENANT};

/// Longest memory is trusted after the start of its last full load while the change stream is
/// in doubt.
pub const MAX_DOUBT: Duration = Duration::from_secs(1);

/// How often the full list is re-read while the change stream is in doubt.
pub const RELOAD_EVERY: Duration = Duration::from_millis(250);

/// Expiry given to a revocation whose record has no readable expiry (kept until a reload reads
/// it; an unreadable one is kept for good).
const NEVER: u64 = u64::MAX;

/// The tenant and token id a revocation path names (`revoked/<tenant>/<jti>`).
pub fn parse_path(path: &str) -> Option<(&str, &str)> {
    let (tenant, jti) = path.strip_prefix(REVOKED)?.split_once('/')?;
    (!tenant.is_empty() && !jti.is_empty() && !jti.contains('/')).then_some((tenant, jti))
}

/// The revocations a node knows and whether it may trust them: plain data, no I/O.
#[derive(Debug, Default)]
pub struct Revocations {
    /// (tenant, jti) -> the token's expiry, in seconds since the epoch.
    entries: HashMap<(String, String), u64>,
    /// (tenant, node id) -> the node revocation's `not_before`: the node's tokens issued
    /// before it are refused (`keys::revoked_node`).
    nodes: HashMap<(String, String), u64>,
    /// When the last successful full load started.
    loaded_at: Option<Instant>,
    /// The resync count when that load started.
    loaded_gen: Option<u64>,
    /// Resyncs and lags seen.
    resyncs: u64,
    /// Whether no ordinary notice has arrived since the last resync.
    awaiting_notice: bool,
}

impl Revocations {
    /// Whether the change stream is known to be live and memory holds every revocation up to
    /// it.
    pub fn live(&self) -> bool {
        self.loaded_gen == Some(self.resyncs) && !self.awaiting_notice
    }

    /// Whether memory may answer at `now`.
    pub fn trusted(&self, now: Instant) -> bool {
        self.live()
            || self
                .loaded_at
                .is_some_and(|at| now.saturating_duration_since(at) < MAX_DOUBT)
    }

    /// Whether the token `jti` of `tenant` is revoked, when memory may answer at `now`; `None`
    /// when the store must be read instead.
    pub fn check(&self, tenant: &str, jti: &str, now: Instant) -> Option<bool> {
        if !self.trusted(now) {
            return None;
        }
        // Looking a (String, String) up by borrowed parts needs an owned key; tokens are
        // short, and the allocation is what a store read would have cost many times over.
        Some(
            self.entries
                .contains_key(&(tenant.to_string(), jti.to_string())),
        )
    }

    /// The `not_before` of the revocation of `node`'s credentials (`Some(None)`: none), when
    /// memory may answer at `now`; `None` when the store must be read instead.
    pub fn check_node(&self, tenant: &str, node: &str, now: Instant) -> Option<Option<u64>> {
        if !self.trusted(now) {
            return None;
        }
        Some(
            self.nodes
                .get(&(tenant.to_string(), node.to_string()))
                .copied(),
        )
    }

    /// Records a revocation (expiring at `exp` seconds; a later value for the same token wins).
    /// A node revocation's path (`node=<id>`) records its `not_before` instead.
    pub fn insert(&mut self, tenant: &str, jti: &str, exp: u64) {
        if let Some(node) = jti.strip_prefix(crate::keys::NODE_REVOKED_PREFIX) {
            self.nodes
                .insert((tenant.to_string(), node.to_string()), exp);
            return;
        }
        self.entries
            .insert((tenant.to_string(), jti.to_string()), exp);
    }

    /// Records a revocation whose expiry is not known yet, unless it is known already. A node
    /// revocation not read yet refuses every token of the node until it is.
    pub fn insert_unknown(&mut self, tenant: &str, jti: &str) {
        if let Some(node) = jti.strip_prefix(crate::keys::NODE_REVOKED_PREFIX) {
            self.nodes
                .insert((tenant.to_string(), node.to_string()), NEVER);
            return;
        }
        self.entries
            .entry((tenant.to_string(), jti.to_string()))
            .or_insert(NEVER);
    }

    /// Notes a resync or a lag: memory may have missed revocations and the stream may be down.
    pub fn resync(&mut self) {
        self.resyncs += 1;
        self.awaiting_notice = true;
    }

    /// Notes an ordinary change notice: the stream is connected.
    pub fn notice(&mut self) {
        self.awaiting_notice = false;
    }

    /// What a full load starting now must hand back to [`Revocations::loaded`].
    pub fn begin_load(&self, now: Instant) -> LoadTicket {
        LoadTicket {
            started: now,
            generation: self.resyncs,
        }
    }

    /// Merges a full load begun with `ticket` (entries: tenant, jti, expiry).
    pub fn loaded(&mut self, ticket: LoadTicket, entries: Vec<(String, String, u64)>) {
        for (tenant, jti, exp) in entries {
            self.insert(&tenant, &jti, exp);
        }
        if self.loaded_at.is_none_or(|at| ticket.started >= at) {
            self.loaded_at = Some(ticket.started);
            self.loaded_gen = Some(ticket.generation);
        }
    }

    /// Whether [`follow`] must read the full list at `now`.
    pub fn needs_reload(&self, now: Instant) -> bool {
        !self.live()
            && self
                .loaded_at
                .is_none_or(|at| now.saturating_duration_since(at) >= RELOAD_EVERY)
    }

    /// Forgets revocations of tokens expired at `now_secs` (they are refused as expired).
    pub fn purge(&mut self, now_secs: u64) {
        self.entries.retain(|_, exp| *exp > now_secs);
        let max_ttl = crate::auth::MAX_TOKEN_TTL_SECS;
        self.nodes
            .retain(|_, nb| nb.saturating_add(max_ttl) > now_secs);
    }

    /// Revocations held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A full load in progress: when it started and the resync count then.
#[derive(Debug, Clone, Copy)]
pub struct LoadTicket {
    started: Instant,
    generation: u64,
}

/// What memory keeps of a revocation record at `revoked/<tenant>/<jti>`: a token's expiry, or
/// for a node revocation its `not_before` ([`NEVER`] when the record cannot be read).
fn record_value(jti: &str, record: &[u8]) -> u64 {
    if jti.starts_with(crate::keys::NODE_REVOKED_PREFIX) {
        crate::auth::node_revocation_not_before(record).unwrap_or(NEVER)
    } else {
        crate::auth::revocation_expiry(record).unwrap_or(NEVER)
    }
}

/// A node's revocations, shared by its request handlers and the [`follow`] task.
#[derive(Debug, Default)]
pub struct RevocationCache {
    inner: Mutex<Revocations>,
}

impl RevocationCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, Revocations> {
        // Every update leaves the data consistent, so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the token is revoked, from memory; `None` when memory cannot be trusted now
    /// and the store must be read. Never touches the store.
    pub fn check(&self, tenant: &str, jti: &str) -> Option<bool> {
        self.lock().check(tenant, jti, Instant::now())
    }

    /// Records a revocation this node has just committed.
    pub fn insert(&self, tenant: &str, jti: &str, exp: u64) {
        self.lock().insert(tenant, jti, exp);
    }

    /// The `not_before` of the revocation of `node`'s credentials, from memory; `None` when
    /// the store must be read.
    pub fn check_node(&self, tenant: &str, node: &str) -> Option<Option<u64>> {
        self.lock().check_node(tenant, node, Instant::now())
    }

    /// Records a node revocation this node has just committed.
    pub fn insert_node(&self, tenant: &str, node: &str, not_before: u64) {
        self.lock().insert(
            tenant,
            &format!("{}{node}", crate::keys::NODE_REVOKED_PREFIX),
            not_before,
        );
    }

    /// Revocations held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Whether memory may answer now.
    pub fn trusted(&self) -> bool {
        self.lock().trusted(Instant::now())
    }

    /// Reads every revocation from the store into memory.
    pub async fn reload(&self, store: &DynStore) -> Result<(), AuthError> {
        let ticket = self.lock().begin_load(Instant::now());
        let listed = store.list(SYSTEM_TENANT, REVOKED).await?;
        let entries = listed
            .iter()
            .filter_map(|e| {
                let (tenant, jti) = parse_path(e.key.path())?;
                let exp = record_value(jti, &e.value);
                Some((tenant.to_string(), jti.to_string(), exp))
            })
            .collect();
        let mut r = self.lock();
        r.loaded(ticket, entries);
        r.purge(now_ms() / 1000);
        Ok(())
    }

    /// Takes in one change notice (reading the revocations it names).
    async fn apply(&self, store: &DynStore, change: &Change) {
        if change.is_resync() {
            self.lock().resync();
            return;
        }
        let named: Vec<(String, String)> = if change.tenant == SYSTEM_TENANT {
            change
                .paths
                .iter()
                .filter_map(|p| parse_path(p))
                .map(|(t, j)| (t.to_string(), j.to_string()))
                .collect()
        } else {
            Vec::new()
        };
        {
            let mut r = self.lock();
            r.notice();
            // Refused from this moment; the expiry follows from the record.
            for (t, j) in &named {
                r.insert_unknown(t, j);
            }
        }
        for (tenant, jti) in named {
            let Ok(key) = Key::new(SYSTEM_TENANT, crate::keys::revoked(&tenant, &jti)) else {
                continue;
            };
            match store.get(&key).await {
                Ok(Some(v)) => {
                    let value = record_value(&jti, &v.value);
                    if value != NEVER {
                        self.lock().insert(&tenant, &jti, value);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read a revocation; kept until its record is read")
                }
            }
        }
    }
}

/// Keeps `cache` current from `changes` until `cancel`: a full load first, then every notice,
/// with full reloads while the stream is in doubt. Subscribe (`store.subscribe()`) before
/// calling, so that nothing committed after the first load starts is missed.
pub async fn follow(
    cache: Arc<RevocationCache>,
    store: DynStore,
    mut changes: broadcast::Receiver<Arc<Change>>,
    cancel: CancellationToken,
) {
    let reload = |why: &'static str| {
        let (cache, store) = (cache.clone(), store.clone());
        async move {
            if let Err(e) = cache.reload(&store).await {
                tracing::warn!(error = %e, why, "cannot read the revoked tokens");
            }
        }
    };
    reload("start").await;
    let mut tick = tokio::time::interval(RELOAD_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut open = true;
    loop {
        let change = tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {
                let needed = {
                    let mut r = cache.lock();
                    r.purge(now_ms() / 1000);
                    r.needs_reload(Instant::now())
                };
                if needed {
                    reload("in doubt").await;
                }
                continue;
            }
            c = changes.recv(), if open => c,
        };
        match change {
            Ok(c) => {
                let resync = c.is_resync();
                cache.apply(&store, &c).await;
                if resync {
                    reload("resync").await;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                cache.lock().resync();
                reload("lagged").await;
            }
            Err(broadcast::error::RecvError::Closed) => {
                // No more notices: stay in doubt for good, reloading on the tick.
                cache.lock().resync();
                open = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(r: &mut Revocations, now: Instant, entries: &[(&str, &str, u64)]) {
        let t = r.begin_load(now);
        r.loaded(
            t,
            entries
                .iter()
                .map(|(a, b, c)| (a.to_string(), b.to_string(), *c))
                .collect(),
        );
    }

    #[test]
    fn paths_name_a_tenant_and_a_token() {
        assert_eq!(parse_path("revoked/acme/j1"), Some(("acme", "j1")));
        assert_eq!(
            parse_path(&crate::keys::revoked("acme", "a.b-c")),
            Some(("acme", "a.b-c"))
        );
        for bad in [
            "revoked/acme",
            "revoked/acme/",
            "revoked//j",
            "nodes/n1",
            "revoked/a/b/c",
        ] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_revocation_refuses_the_nodes_tokens_issued_before_it_only() {
        let mut r = Revocations::default();
        let now = Instant::now();
        assert_eq!(r.check_node("acme", "web-1", now), None, "not trusted yet");
        loaded(&mut r, now, &[]);
        assert_eq!(r.check_node("acme", "web-1", now), Some(None));
        // Seen in a notice before its record is read: every token of the node is refused.
        r.insert_unknown("acme", "node=web-1");
        assert_eq!(r.check_node("acme", "web-1", now), Some(Some(u64::MAX)));
        // Read: the tokens issued before `not_before` are refused, later ones are not.
        r.insert("acme", "node=web-1", 1000);
        assert_eq!(r.check_node("acme", "web-1", now), Some(Some(1000)));
        assert_eq!(r.check_node("acme", "web-2", now), Some(None));
        assert_eq!(r.check_node("globex", "web-1", now), Some(None));
        assert_eq!(
            r.check("acme", "node=web-1", now),
            Some(false),
            "not a token id"
        );
        let claims = |iat: u64, node: Option<&str>| crate::auth::Claims {
            iat,
            exp: iat + 60,
            ..crate::auth::Claims::sample(crate::auth::Role::Agent, "acme", node)
        };
        assert!(crate::auth::refused_by_node(
            &claims(999, Some("web-1")),
            Some(1000)
        ));
        assert!(!crate::auth::refused_by_node(
            &claims(1000, Some("web-1")),
            Some(1000)
        ));
        assert!(!crate::auth::refused_by_node(&claims(1, None), Some(1000)));
        assert!(!crate::auth::refused_by_node(
            &claims(1, Some("web-1")),
            None
        ));
        // Kept for a token lifetime after it, then forgotten.
        r.purge(1000 + crate::auth::MAX_TOKEN_TTL_SECS - 1);
        assert_eq!(r.check_node("acme", "web-1", now), Some(Some(1000)));
        r.purge(1000 + crate::auth::MAX_TOKEN_TTL_SECS);
        assert_eq!(r.check_node("acme", "web-1", now), Some(None));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_trusted_before_the_first_load() {
        let r = Revocations::default();
        assert_eq!(r.check("t", "j", Instant::now()), None);
        assert!(r.needs_reload(Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_loaded_cache_on_a_live_stream_answers_from_memory_for_good() {
        let mut r = Revocations::default();
        let t0 = Instant::now();
        loaded(&mut r, t0, &[("acme", "j1", u64::MAX)]);
        assert!(r.live());
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(r.check("acme", "j1", later), Some(true));
        assert_eq!(r.check("acme", "j2", later), Some(false));
        // Revocations are per tenant.
        assert_eq!(r.check("globex", "j1", later), Some(false));
        assert!(!r.needs_reload(later));
        r.insert("acme", "j2", u64::MAX);
        assert_eq!(r.check("acme", "j2", later), Some(true));
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_resync_memory_is_trusted_for_at_most_a_second_without_a_reload() {
        let mut r = Revocations::default();
        let t0 = Instant::now();
        loaded(&mut r, t0, &[]);
        let t1 = t0 + Duration::from_secs(10);
        r.resync();
        // The last load is 10 s old: the store must be read.
        assert_eq!(r.check("acme", "j1", t1), None);
        assert!(r.needs_reload(t1));
        // A reload after the resync is trusted for MAX_DOUBT, not longer, while no notice
        // shows the stream is back.
        loaded(&mut r, t1, &[]);
        assert!(!r.live());
        assert_eq!(r.check("acme", "j1", t1 + MAX_DOUBT / 2), Some(false));
        assert_eq!(r.check("acme", "j1", t1 + MAX_DOUBT), None);
        assert!(!r.needs_reload(t1 + RELOAD_EVERY / 2));
        assert!(r.needs_reload(t1 + RELOAD_EVERY));
        // A notice: the stream is back, and the load started after the resync covers the gap.
        r.notice();
        assert!(r.live());
        assert_eq!(r.check("acme", "j1", t1 + MAX_DOUBT * 100), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_notice_alone_does_not_end_the_doubt_without_a_load_after_the_resync() {
        let mut r = Revocations::default();
        let t0 = Instant::now();
        loaded(&mut r, t0, &[]);
        r.resync();
        r.notice();
        // Revocations committed while the stream was down are not in memory yet.
        assert!(!r.live());
        assert_eq!(r.check("acme", "j1", t0 + MAX_DOUBT), None);
        // A load that began before a second resync does not count either.
        let t1 = t0 + Duration::from_secs(2);
        let ticket = r.begin_load(t1);
        r.resync();
        r.notice();
        r.loaded(ticket, vec![]);
        assert!(!r.live());
        assert_eq!(r.check("acme", "j1", t1 + MAX_DOUBT), None);
        loaded(&mut r, t1 + RELOAD_EVERY, &[]);
        assert!(r.live());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_load_never_moves_the_trust_window_back() {
        let mut r = Revocations::default();
        let t0 = Instant::now();
        let slow = r.begin_load(t0);
        r.resync();
        let t1 = t0 + Duration::from_millis(500);
        loaded(&mut r, t1, &[("acme", "late", u64::MAX)]);
        r.loaded(
            slow,
            vec![("acme".to_string(), "early".to_string(), u64::MAX)],
        );
        // Both loads' entries are kept; the window is the newer load's.
        assert_eq!(r.check("acme", "late", t1), Some(true));
        assert_eq!(r.check("acme", "early", t1), Some(true));
        assert_eq!(r.check("acme", "x", t1 + MAX_DOUBT), None);
        assert_eq!(r.check("acme", "x", t0 + MAX_DOUBT), Some(false));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_revocations_are_dropped_and_unknown_expiries_kept() {
        let mut r = Revocations::default();
        loaded(
            &mut r,
            Instant::now(),
            &[("t", "old", 100), ("t", "new", 200)],
        );
        r.insert_unknown("t", "pending");
        // Known already: its expiry is not replaced by "unknown".
        r.insert_unknown("t", "old");
        r.purge(100);
        assert_eq!(r.len(), 2);
        assert_eq!(r.check("t", "old", Instant::now()), Some(false));
        assert_eq!(r.check("t", "new", Instant::now()), Some(true));
        assert_eq!(r.check("t", "pending", Instant::now()), Some(true));
        r.insert("t", "pending", 150);
        r.purge(150);
        assert_eq!(r.check("t", "pending", Instant::now()), Some(false));
        assert_eq!(r.len(), 1);
    }

    /// Polls `f` every 10 ms until it holds, for at most `within`.
    async fn holds_within(within: Duration, mut f: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + within;
        loop {
            if f() {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The driver on a real store, fed by a channel the test controls: notices bring
    /// revocations in, and after a resync a revocation that no notice announced is found by the
    /// reloads within a second.
    #[tokio::test]
    async fn the_follower_learns_revocations_from_notices_and_from_reloads_in_doubt() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let far = now_ms() / 1000 + 3600;
        crate::auth::revoke(store.as_ref(), "before", "acme", far)
            .await
            .unwrap();
        let cache = Arc::new(RevocationCache::default());
        assert_eq!(cache.check("acme", "before"), None);
        let (tx, rx) = broadcast::channel(16);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(follow(cache.clone(), store.clone(), rx, cancel.clone()));
        let sec = Duration::from_secs(1);
        assert!(holds_within(5 * sec, || cache.check("acme", "before") == Some(true)).await);

        // Committed without a notice on the (live) stream: not seen, and no reload looks.
        crate::auth::revoke(store.as_ref(), "quiet", "acme", far)
            .await
            .unwrap();
        tx.send(
            Change {
                tenant: SYSTEM_TENANT.into(),
                revision: 1,
                paths: vec!["nodes/n1".into()],
                deleted: Vec::new(),
            }
            .into(),
        )
        .unwrap();
        assert!(
            !holds_within(3 * RELOAD_EVERY, || cache.check("acme", "quiet")
                == Some(true))
            .await
        );
        // Its notice brings it in.
        tx.send(
            Change {
                tenant: SYSTEM_TENANT.into(),
                revision: 2,
                paths: vec![crate::keys::revoked("acme", "quiet")],
                deleted: Vec::new(),
            }
            .into(),
        )
        .unwrap();
        assert!(holds_within(sec, || cache.check("acme", "quiet") == Some(true)).await);

        // The stream is lost: a revocation made meanwhile is found by the reloads.
        tx.send(Change::resync().into()).unwrap();
        crate::auth::revoke(store.as_ref(), "during", "acme", far)
            .await
            .unwrap();
        assert!(holds_within(sec, || cache.check("acme", "during") == Some(true)).await);
        assert!(!cache.lock().live());
        // An ordinary notice shows the stream is back; the next reload ends the doubt.
        tx.send(
            Change {
                tenant: "acme".into(),
                revision: 3,
                paths: vec!["jobs/x".into()],
                deleted: Vec::new(),
            }
            .into(),
        )
        .unwrap();
        assert!(holds_within(5 * sec, || cache.lock().live()).await);
        cancel.cancel();
        task.await.unwrap();
    }

    /// While the store cannot be read and the stream is in doubt, memory is not trusted after
    /// a second: checks fall back to the store (which then fails, as a store read would).
    #[tokio::test(start_paused = true)]
    async fn memory_is_not_trusted_for_long_when_it_cannot_be_reloaded() {
        let mut r = Revocations::default();
        let t0 = Instant::now();
        loaded(&mut r, t0, &[("acme", "j1", u64::MAX)]);
        r.resync();
        // Reloads keep failing: nothing calls `loaded`.
        assert_eq!(
            r.check("acme", "j1", t0 + MAX_DOUBT - Duration::from_millis(1)),
            Some(true)
        );
        assert_eq!(r.check("acme", "j1", t0 + MAX_DOUBT), None);
        assert_eq!(r.check("acme", "j2", t0 + Duration::from_secs(60)), None);
    }
}
