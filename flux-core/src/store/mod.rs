//! The versioned, fenced key/value store every FluxForge node shares.
//!
//! Invariants every backend must keep (checked by [`conformance`] under the `testing` feature):
//!
//! 1. **Versions.** Every object carries a version. A write sets the version of every key it
//!    touches to the tenant's new *revision*, a per-tenant counter that only grows. A key that is
//!    deleted and created again therefore never reuses an old version (no ABA).
//! 2. **Compare-and-swap.** Each operation states what it expects of its key ([`Expect`]); if any
//!    expectation fails the whole transaction fails with [`StoreError::Conflict`] and nothing is
//!    written.
//! 3. **Atomic transactions.** A [`Txn`] touches keys of one tenant and applies all of its
//!    operations or none. Readers never observe half of a transaction.
//! 4. **Fencing.** A transaction may carry the writer's epoch. The store rejects it with
//!    [`StoreError::Fenced`] unless that epoch equals the current epoch, which only
//!    [`Store::next_epoch`] moves (upwards). No clock or TTL is involved: a writer that was paused
//!    or partitioned while another node took a new epoch cannot write, whatever it believes.
//! 5. **Durability.** A transaction whose `commit` returned `Ok` survives a crash of the process
//!    (redb: fsync'd commit) or of the server (Redis with `appendfsync always`).
//! 6. **Tenant isolation.** Listing is scoped to one tenant; keys of tenant `acme` never show up
//!    when listing tenant `acme-corp`, whatever the prefix.
//! 7. **Notification.** After a commit, every [`Store::subscribe`] receiver (in this process or,
//!    for shared backends, in other processes) receives a [`Change`]. Notifications are hints:
//!    a receiver that lagged gets [`Change::resync`] and must re-read.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

pub use layer::Layer;

#[cfg(feature = "testing")]
pub mod conformance;
pub mod layer;
pub mod redb;
pub mod redis;

/// Per-tenant monotonic counter; the version of an object is the revision that last wrote it.
pub type Version = u64;
/// Fencing epoch, taken from [`Store::next_epoch`] on every leadership acquisition.
pub type Epoch = u64;

/// Tenant that holds cluster-wide objects (leases, nodes, revoked tokens). User tenants cannot
/// be named like this because their names may not start with `_`.
pub const SYSTEM_TENANT: &str = "_system";

/// Longest tenant name accepted.
pub const MAX_TENANT_LEN: usize = 63;
/// Longest object path accepted.
pub const MAX_PATH_LEN: usize = 512;

/// Errors of the store. `Conflict` and `Fenced` are expected outcomes callers act on; the others
/// describe a store that cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("version conflict on {key}: expected {expected}, found {}", found.map_or("no object".to_string(), |v| format!("version {v}")))]
    Conflict {
        key: String,
        expected: Expect,
        found: Option<Version>,
    },
    #[error("write fenced: it carries epoch {presented} but the current epoch is {current}")]
    Fenced { presented: Epoch, current: Epoch },
    #[error("invalid key: {0}")]
    InvalidKey(String),
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
    #[error("invalid store spec {spec:?}: {reason}")]
    InvalidSpec { spec: String, reason: String },
    #[error("cannot open store {location}: {reason}")]
    Open { location: String, reason: String },
    #[error("store is not configured safely: {0}")]
    Misconfigured(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt data in store: {0}")]
    Corrupt(String),
    /// A restore without `wipe` found objects in the store.
    #[error("the store already holds {0} objects; restore over them only with force")]
    NotEmpty(usize),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The result of a read-modify-write's commit: `true` when it landed, `false` when a version it
/// expected had moved (the caller reads again and retries); any other error is passed on.
pub(crate) fn landed(commit: Result<Version>) -> Result<bool> {
    match commit {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    }
}

/// What a write expects of its key before it is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expect {
    /// The key must not exist.
    Absent,
    /// The key must exist at exactly this version.
    Version(Version),
    /// No condition.
    Any,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expect::Absent => f.write_str("no object"),
            Expect::Version(v) => write!(f, "version {v}"),
            Expect::Any => f.write_str("anything"),
        }
    }
}

impl Expect {
    /// Whether an object currently at `found` satisfies this expectation.
    pub fn admits(self, found: Option<Version>) -> bool {
        match self {
            Expect::Absent => found.is_none(),
            Expect::Version(v) => found == Some(v),
            Expect::Any => true,
        }
    }
}

/// A key: a tenant and a `/`-separated path inside it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    tenant: String,
    path: String,
}

impl Key {
    /// Builds a key after validating both parts: tenant `[a-z0-9_-]{1,63}`, path 1..=512 bytes of
    /// printable ASCII without spaces or braces.
    pub fn new(tenant: impl Into<String>, path: impl Into<String>) -> Result<Key> {
        let tenant = tenant.into();
        let path = path.into();
        validate_tenant(&tenant)?;
        validate_path(&path, false)?;
        Ok(Key { tenant, path })
    }

    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.tenant, self.path)
    }
}

/// Checks a tenant name for use in keys.
pub fn validate_tenant(tenant: &str) -> Result<()> {
    let ok = !tenant.is_empty()
        && tenant.len() <= MAX_TENANT_LEN
        && tenant
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(format!(
            "tenant {tenant:?} must be 1 to {MAX_TENANT_LEN} characters of a-z, 0-9, '-' or '_'"
        )))
    }
}

/// Checks an object path (or, with `allow_empty`, a listing prefix).
pub fn validate_path(path: &str, allow_empty: bool) -> Result<()> {
    let ok = (allow_empty || !path.is_empty())
        && path.len() <= MAX_PATH_LEN
        && path
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'{' && b != b'}');
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidKey(format!(
            "path {path:?} must be 1 to {MAX_PATH_LEN} printable ASCII characters without spaces or braces"
        )))
    }
}

/// An object as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versioned {
    pub version: Version,
    pub value: Vec<u8>,
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub version: Version,
    pub value: Vec<u8>,
}

/// Every object of a store at one instant, with the fencing epoch then in force.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub epoch: Epoch,
    /// Each tenant's revision counter.
    pub revisions: BTreeMap<String, Version>,
    /// Ordered by tenant, then path.
    pub entries: Vec<Entry>,
}

/// An ordered, bounded read of a tenant's objects under a prefix (see [`Store::list_range`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Range {
    /// Only paths starting with this.
    pub prefix: String,
    /// Only paths strictly after this one in the direction of the read (a cursor: the last
    /// path of the previous page).
    pub start_after: Option<String>,
    /// At most this many entries.
    pub limit: usize,
    /// Descending path order instead of ascending.
    pub reverse: bool,
}

impl Range {
    /// The first `limit` entries under `prefix`, in ascending path order.
    pub fn first(prefix: impl Into<String>, limit: usize) -> Range {
        Range {
            prefix: prefix.into(),
            start_after: None,
            limit,
            reverse: false,
        }
    }

    /// The last `limit` entries under `prefix`, in descending path order.
    pub fn last(prefix: impl Into<String>, limit: usize) -> Range {
        Range {
            reverse: true,
            ..Range::first(prefix, limit)
        }
    }

    /// Continues after `path` (exclusive), in the same direction.
    pub fn after(mut self, path: impl Into<String>) -> Range {
        self.start_after = Some(path.into());
        self
    }

    /// Whether `path` belongs to the range (prefix and cursor; not the limit).
    pub fn admits(&self, path: &str) -> bool {
        path.starts_with(self.prefix.as_str())
            && match &self.start_after {
                None => true,
                Some(a) if self.reverse => path < a.as_str(),
                Some(a) => path > a.as_str(),
            }
    }

    /// Checks the prefix and cursor like object paths.
    pub fn validate(&self) -> Result<()> {
        validate_path(&self.prefix, true)?;
        if let Some(a) = &self.start_after {
            validate_path(a, false)?;
        }
        Ok(())
    }

    /// The first path above every path under the prefix (paths are printable ASCII, below 0x7f).
    pub(crate) fn prefix_end(&self) -> String {
        format!("{}\u{7f}", self.prefix)
    }
}

/// One operation of a transaction.
#[derive(Clone, Debug)]
pub enum Op {
    Put {
        key: Key,
        value: Vec<u8>,
        expect: Expect,
    },
    Delete {
        key: Key,
        expect: Expect,
    },
    /// Writes nothing, but the transaction fails unless the key meets `expect`.
    Check {
        key: Key,
        expect: Expect,
    },
    /// Writes a new object under the prefix `key.path()` (which ends in `/`) at the path
    /// [`append_path`]`(prefix, revision, index)`: `revision` is the one this transaction commits
    /// at and `index` counts the earlier appends under the same prefix in the transaction. The
    /// writer does not know the revision before the commit; the path is fresh by construction
    /// (revisions only grow), so an append never conflicts. This is how a change and the record
    /// of it (an event) commit together, ordered by revision.
    Append {
        key: Key,
        value: Vec<u8>,
    },
}

/// Most appends under one prefix in one transaction.
pub const MAX_APPENDS: usize = 10_000;

/// The path an [`Op::Append`] under `prefix` writes: `{prefix}{revision:020}/{index:04}`, so that
/// path order is commit order.
pub fn append_path(prefix: &str, revision: Version, index: usize) -> String {
    format!("{prefix}{revision:020}/{index:04}")
}

impl Op {
    pub fn key(&self) -> &Key {
        match self {
            Op::Put { key, .. }
            | Op::Delete { key, .. }
            | Op::Check { key, .. }
            | Op::Append { key, .. } => key,
        }
    }

    pub fn expect(&self) -> Expect {
        match self {
            Op::Put { expect, .. } | Op::Delete { expect, .. } | Op::Check { expect, .. } => {
                *expect
            }
            Op::Append { .. } => Expect::Absent,
        }
    }
}

/// An all-or-nothing group of operations on keys of one tenant, optionally fenced.
#[derive(Clone, Debug, Default)]
pub struct Txn {
    pub ops: Vec<Op>,
    pub fence: Option<Epoch>,
}

impl Txn {
    pub fn new() -> Txn {
        Txn::default()
    }

    /// Fences the transaction with the writer's epoch.
    pub fn fenced(mut self, epoch: Epoch) -> Txn {
        self.fence = Some(epoch);
        self
    }

    pub fn put(mut self, key: Key, value: impl Into<Vec<u8>>, expect: Expect) -> Txn {
        self.ops.push(Op::Put {
            key,
            value: value.into(),
            expect,
        });
        self
    }

    pub fn delete(mut self, key: Key, expect: Expect) -> Txn {
        self.ops.push(Op::Delete { key, expect });
        self
    }

    pub fn check(mut self, key: Key, expect: Expect) -> Txn {
        self.ops.push(Op::Check { key, expect });
        self
    }

    /// Appends `value` under the prefix `key.path()` at this transaction's revision
    /// (see [`Op::Append`]).
    pub fn append(mut self, key: Key, value: impl Into<Vec<u8>>) -> Txn {
        self.ops.push(Op::Append {
            key,
            value: value.into(),
        });
        self
    }

    /// The index each [`Op::Append`] of the transaction takes under its prefix, by operation
    /// position (`None` for other operations).
    pub fn append_indexes(&self) -> Vec<Option<usize>> {
        let mut seen: Vec<(&str, usize)> = Vec::new();
        self.ops
            .iter()
            .map(|op| match op {
                Op::Append { key, .. } => {
                    let p = key.path();
                    match seen.iter_mut().find(|(q, _)| *q == p) {
                        Some((_, n)) => {
                            *n += 1;
                            Some(*n)
                        }
                        None => {
                            seen.push((p, 0));
                            Some(0)
                        }
                    }
                }
                _ => None,
            })
            .collect()
    }

    /// Validates the shape of the transaction and returns its tenant.
    pub fn tenant(&self) -> Result<&str> {
        let first = self.ops.first().ok_or_else(|| {
            StoreError::InvalidTxn("a transaction needs at least one operation".into())
        })?;
        let tenant = first.key().tenant();
        let mut appends = 0usize;
        for (i, op) in self.ops.iter().enumerate() {
            if let Op::Append { key, .. } = op {
                appends += 1;
                if !key.path().ends_with('/') || key.path().len() + 25 > MAX_PATH_LEN {
                    return Err(StoreError::InvalidTxn(format!(
                        "append prefix {:?} must end in '/' and leave room for the revision",
                        key.path()
                    )));
                }
                if appends > MAX_APPENDS {
                    return Err(StoreError::InvalidTxn(format!(
                        "at most {MAX_APPENDS} appends in one transaction"
                    )));
                }
            }
            if op.key().tenant() != tenant {
                return Err(StoreError::InvalidTxn(format!(
                    "operation {i} touches tenant {:?} but the transaction belongs to {tenant:?}",
                    op.key().tenant()
                )));
            }
            if !matches!(op, Op::Append { .. })
                && self.ops[..i]
                    .iter()
                    .any(|o| !matches!(o, Op::Append { .. }) && o.key() == op.key())
            {
                return Err(StoreError::InvalidTxn(format!(
                    "key {} appears twice in one transaction",
                    op.key()
                )));
            }
        }
        Ok(tenant)
    }
}

/// Notice that a tenant's objects changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// Tenant whose objects changed; empty for a resync.
    pub tenant: String,
    /// The revision the change committed at; 0 for a resync.
    pub revision: Version,
    /// Paths written or deleted; empty for a resync.
    pub paths: Vec<String>,
    /// Those of `paths` that were deleted (absent from notices that delete nothing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deleted: Vec<String>,
}

impl Change {
    /// A notice that anything may have changed (a receiver lagged or a connection was lost).
    pub fn resync() -> Change {
        Change {
            tenant: String::new(),
            revision: 0,
            paths: Vec::new(),
            deleted: Vec::new(),
        }
    }

    pub fn is_resync(&self) -> bool {
        self.tenant.is_empty()
    }

    /// Whether `path`, one of this change's paths, was deleted by it (and not written).
    pub fn deletes(&self, path: &str) -> bool {
        self.deleted.iter().any(|d| d == path)
    }

    /// Whether this change may concern `prefix` in `tenant`.
    pub fn touches(&self, tenant: &str, prefix: &str) -> bool {
        self.is_resync()
            || (self.tenant == tenant && self.paths.iter().any(|p| p.starts_with(prefix)))
    }
}

/// The versioned, fenced key/value store. See the module documentation for its invariants.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    /// Short name of the backend (`redb`, `redis`).
    fn backend(&self) -> &'static str;

    /// Reads one object.
    async fn get(&self, key: &Key) -> Result<Option<Versioned>>;

    /// Applies a transaction atomically; returns the revision every written key now carries.
    async fn commit(&self, txn: Txn) -> Result<Version>;

    /// Lists a tenant's objects whose path starts with `prefix`, ordered by path, as one
    /// consistent snapshot.
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>>;

    /// Reads at most `range.limit` of a tenant's objects under `range.prefix`, in path order
    /// (descending with `range.reverse`), strictly after `range.start_after` when given, as one
    /// consistent snapshot. Costs about what it returns, not what the prefix holds.
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>>;

    /// Tenants that have ever had an object written.
    async fn tenants(&self) -> Result<Vec<String>>;

    /// Moves the fencing epoch up by one and returns it. Writes fenced with older epochs are
    /// rejected from now on.
    async fn next_epoch(&self) -> Result<Epoch>;

    /// The current fencing epoch (0 before the first [`Store::next_epoch`]).
    async fn current_epoch(&self) -> Result<Epoch>;

    /// Raises the epoch to at least `floor` (used by restore so no pre-restore leader can write);
    /// returns the epoch now in force.
    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch>;

    /// Subscribes to change notifications. Every subscriber receives the same notice (one
    /// allocation per commit, however many subscribe), so a receiver only reads it.
    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>>;

    /// Takes or renews the cluster's leader lease for `holder`, to last `ttl` from when the store
    /// applies it. A fresh acquisition moves the fencing epoch up in the same atomic step.
    /// Returns the epoch of `holder`'s term while it holds the lease, `None` when another holder
    /// has it.
    async fn acquire_lease(&self, holder: &str, ttl: std::time::Duration) -> Result<Option<Epoch>>;

    /// Gives the lease up if `holder` has it, so a successor can take it at once.
    async fn release_lease(&self, holder: &str) -> Result<()>;

    /// Who holds the lease, with its term's epoch.
    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>>;

    /// Every object of every tenant, with the fencing epoch and each tenant's revision counter,
    /// read as one consistent snapshot.
    async fn snapshot(&self) -> Result<Snapshot>;

    /// Replaces every object with `entries` (versions kept), in one atomic step that also moves
    /// the fencing epoch to `max(current, epoch_floor) + 1` and returns it, so no leader elected
    /// before can write afterwards. Unless `force`, a store holding any object other than the
    /// nodes' own records (`_system/nodes/`) is refused with [`StoreError::NotEmpty`] and nothing
    /// changes. Each tenant's revision counter ends at the highest of its old value, `revisions`
    /// and the restored versions, so no version issued before is issued again. Token
    /// revocations (`_system/revoked/`) in the store that `entries` does not hold are kept,
    /// read in the same atomic step (a restore never brings a revoked token back, even one
    /// revoked while the restore was under way). Subscribers receive a resync.
    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch>;

    /// Why the store cannot commit writes right now (a full disk, Redis refusing writes), or
    /// `None` while it can. It clears by itself once a write succeeds again: the backends
    /// retry a write of their own every second while it is set. Readiness follows it.
    fn unwritable(&self) -> Option<String> {
        None
    }

    /// The group commit's counters so far: durable steps taken (redb write transactions with
    /// their fsync, Redis commit script calls) and the requests they carried; `None` for a
    /// store that keeps none.
    fn commit_batches(&self) -> Option<(u64, u64)> {
        None
    }

    /// Applies several independent transactions, each atomically and on its own: one that
    /// conflicts or is fenced fails alone while the others commit. The results are in the order
    /// of `txns`. Backends gather concurrent commits into one durable step (one redb write
    /// transaction and fsync, one Redis round trip), so handing a whole batch over at once lets
    /// it share one.
    async fn commit_many(&self, txns: Vec<Txn>) -> Vec<Result<Version>> {
        futures::future::join_all(txns.into_iter().map(|t| self.commit(t))).await
    }

    /// Writes one object.
    async fn put(&self, key: Key, value: Vec<u8>, expect: Expect) -> Result<Version> {
        self.commit(Txn::new().put(key, value, expect)).await
    }

    /// Deletes one object.
    async fn delete(&self, key: Key, expect: Expect) -> Result<Version> {
        self.commit(Txn::new().delete(key, expect)).await
    }
}

/// Checks a lease holder name (a node id): 1–128 characters without `|`.
pub fn validate_holder(holder: &str) -> Result<()> {
    if holder.is_empty() || holder.len() > 128 || holder.contains('|') {
        return Err(StoreError::InvalidKey(format!(
            "lease holder {holder:?} must be 1 to 128 characters without '|'"
        )));
    }
    Ok(())
}

/// Counters of a backend's group commit: durable steps taken (redb write transactions, Redis
/// script calls) and the requests they carried.
#[derive(Debug, Default)]
pub struct BatchStats {
    batches: std::sync::atomic::AtomicU64,
    requests: std::sync::atomic::AtomicU64,
}

impl BatchStats {
    pub(crate) fn record(&self, requests: usize) {
        use std::sync::atomic::Ordering::Relaxed;
        self.batches.fetch_add(1, Relaxed);
        self.requests.fetch_add(requests as u64, Relaxed);
    }

    /// `(batches, requests)` so far.
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.batches.load(Relaxed), self.requests.load(Relaxed))
    }
}

/// A shared handle to a store.
pub type DynStore = Arc<dyn Store>;

/// Opens the store named by `spec`: `redb:PATH` (embedded, default) or `redis://HOST:PORT[/DB]`
/// (shared, for high availability). `rediss://` uses TLS. Adding `?durability=relaxed` to a Redis
/// URL accepts a server without `appendfsync always` (acknowledged writes may then be lost).
pub async fn open(spec: &str) -> Result<DynStore> {
    open_with(spec, &OpenOptions::default()).await
}

/// How a store is opened, beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// redb's page cache in bytes (its default: 1 GiB); Redis ignores it.
    pub redb_cache_bytes: Option<usize>,
}

/// [`open`] with `options`.
pub async fn open_with(spec: &str, options: &OpenOptions) -> Result<DynStore> {
    if let Some(path) = spec.strip_prefix("redb:") {
        if path.is_empty() {
            return Err(StoreError::InvalidSpec {
                spec: spec.into(),
                reason: "redb: needs a file path, as in redb:/var/lib/fluxd/flux.redb".into(),
            });
        }
        let store = redb::RedbStore::open_with_cache(path, options.redb_cache_bytes).await?;
        Ok(Arc::new(store))
    } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        let store = redis::RedisStore::connect(spec).await?;
        Ok(Arc::new(store))
    } else {
        Err(StoreError::InvalidSpec {
            spec: spec.into(),
            reason: "expected redb:PATH or redis://HOST:PORT".into(),
        })
    }
}

/// Waits until `store` reports a change touching `prefix` in `tenant`, or until `deadline`.
/// Returns `true` if a change (or a resync) was seen. Callers subscribe *before* reading what
/// they wait on, then pass the receiver here, so no change between read and wait is missed.
pub async fn wait_for_change(
    rx: &mut broadcast::Receiver<Arc<Change>>,
    tenant: &str,
    prefix: &str,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(Ok(change)) if change.touches(tenant, prefix) => return true,
            Ok(Ok(_)) => continue,
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_reject_bad_tenants_and_paths() {
        assert!(Key::new("acme", "jobs/1").is_ok());
        assert!(Key::new("", "jobs/1").is_err());
        assert!(Key::new("Acme", "jobs/1").is_err());
        assert!(Key::new("a{b}", "jobs/1").is_err());
        assert!(Key::new("acme", "").is_err());
        assert!(Key::new("acme", "jobs/{x}").is_err());
        assert!(Key::new("acme", "jobs 1").is_err());
        assert!(Key::new("acme", "x".repeat(MAX_PATH_LEN + 1)).is_err());
        assert!(Key::new("a".repeat(MAX_TENANT_LEN + 1), "p").is_err());
    }

    #[test]
    fn transactions_must_stay_in_one_tenant_and_not_repeat_keys() {
        let a = Key::new("a", "x").unwrap();
        let b = Key::new("b", "x").unwrap();
        assert!(Txn::new().tenant().is_err());
        let t = Txn::new().put(a.clone(), b"1".to_vec(), Expect::Any).put(
            b,
            b"1".to_vec(),
            Expect::Any,
        );
        assert!(matches!(t.tenant(), Err(StoreError::InvalidTxn(_))));
        let t = Txn::new()
            .put(a.clone(), b"1".to_vec(), Expect::Any)
            .check(a, Expect::Any);
        assert!(matches!(t.tenant(), Err(StoreError::InvalidTxn(_))));
    }

    #[test]
    fn expectations_admit_only_matching_versions() {
        assert!(Expect::Absent.admits(None));
        assert!(!Expect::Absent.admits(Some(1)));
        assert!(Expect::Version(3).admits(Some(3)));
        assert!(!Expect::Version(3).admits(Some(4)));
        assert!(!Expect::Version(3).admits(None));
        assert!(Expect::Any.admits(None) && Expect::Any.admits(Some(9)));
    }

    #[test]
    fn changes_match_tenant_and_prefix_exactly() {
        let c = Change {
            tenant: "acme".into(),
            revision: 4,
            paths: vec!["tasks/agent-1/t1".into()],
            deleted: Vec::new(),
        };
        assert!(c.touches("acme", "tasks/agent-1/"));
        assert!(!c.touches("acme", "tasks/agent-2/"));
        assert!(!c.touches("acme-corp", "tasks/"));
        assert!(Change::resync().touches("anyone", "x"));
    }
}
