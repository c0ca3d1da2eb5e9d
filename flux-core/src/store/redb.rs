//! Embedded backend on a single redb file: the default for one node.
//!
//! Every commit is a redb write transaction with [`Durability::Immediate`], so `commit` returns
//! only after the data is fsync'd: an acknowledged write survives `kill -9` of the process. The
//! file is locked by redb, so a second process cannot open it while the first holds it.
//!
//! Layout: table `objects` maps `(tenant, path)` to `(version, value)`, so a tenant's objects
//! are contiguous and a prefix listing is one range scan; table `meta` holds the fencing epoch
//! and each tenant's revision counter; table `info` marks the file as a FluxForge store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, TableError};
use tokio::sync::broadcast;

use super::{
    Change, Entry, Epoch, Key, Op, Result, Snapshot, Store, StoreError, Txn, Version, Versioned,
    validate_path, validate_tenant,
};

const OBJECTS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INFO: TableDefinition<&str, &str> = TableDefinition::new("info");

const FORMAT_KEY: &str = "format";
/// Marker written into every FluxForge redb file; a file without it is refused.
pub const FORMAT: &str = "fluxforge-store/1";
const EPOCH: &str = "epoch";
const REV_PREFIX: &str = "rev/";

/// The embedded store.
pub struct RedbStore {
    db: Arc<Database>,
    path: PathBuf,
    changes: broadcast::Sender<Change>,
    /// The leader lease: holder, epoch, expiry. In memory, because the redb file is locked to
    /// one process, so every contender for this lease lives in this process.
    lease: tokio::sync::Mutex<Option<(String, Epoch, std::time::Instant)>>,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("path", &self.path)
            .finish()
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Unavailable(format!("redb: {}", e.into()))
}

fn open_error(path: &Path, e: redb::DatabaseError) -> StoreError {
    let reason = match e {
        redb::DatabaseError::DatabaseAlreadyOpen => {
            "the file is already open in another process (is another fluxd using it?)".to_string()
        }
        redb::DatabaseError::UpgradeRequired(v) => {
            format!("the file uses redb file format {v}, which this build cannot open")
        }
        other => format!("not a readable redb database ({other}); the file was left untouched"),
    };
    StoreError::Open {
        location: path.display().to_string(),
        reason,
    }
}

impl RedbStore {
    /// Opens (or creates) the store file at `path`. A file that is not a redb database, or a redb
    /// database that FluxForge did not create, is refused without being modified.
    pub async fn open(path: impl AsRef<Path>) -> Result<RedbStore> {
        let path = path.as_ref().to_path_buf();
        let p = path.clone();
        let db = tokio::task::spawn_blocking(move || -> Result<Database> {
            if let Some(parent) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                // The store holds every tenant's objects, secrets of running jobs included: a
                // directory made for it is owner-only, and so is the file (redb would create
                // it with the default mode).
                if !parent.exists() {
                    use std::os::unix::fs::DirBuilderExt;
                    std::fs::DirBuilder::new()
                        .recursive(true)
                        .mode(0o700)
                        .create(parent)
                        .map_err(|e| StoreError::Open {
                            location: p.display().to_string(),
                            reason: format!("cannot create directory {}: {e}", parent.display()),
                        })?;
                }
            }
            crate::files::ensure_private_file(&p).map_err(|e| StoreError::Open {
                location: p.display().to_string(),
                reason: format!("cannot make the file owner-only: {e}"),
            })?;
            open_checked(&p)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("redb open task failed: {e}")))??;
        let (changes, _) = broadcast::channel(4096);
        Ok(RedbStore {
            db: Arc::new(db),
            path,
            changes,
            lease: tokio::sync::Mutex::new(None),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("redb task failed: {e}")))?
    }

    async fn update_epoch(&self, f: impl FnOnce(Epoch) -> Epoch + Send + 'static) -> Result<Epoch> {
        self.blocking(move |db| {
            let mut w = db.begin_write().map_err(unavailable)?;
            w.set_durability(Durability::Immediate)
                .map_err(unavailable)?;
            let next = {
                let mut meta = w.open_table(META).map_err(unavailable)?;
                let cur = meta
                    .get(EPOCH)
                    .map_err(unavailable)?
                    .map_or(0, |g| g.value());
                let next = f(cur);
                meta.insert(EPOCH, next).map_err(unavailable)?;
                next
            };
            w.commit().map_err(unavailable)?;
            Ok(next)
        })
        .await
    }
}

/// What a redb file holds.
enum Contents {
    Ours,
    Empty,
    Foreign(String),
}

fn classify(db: &impl ReadableDatabase) -> Result<Contents> {
    let r = db.begin_read().map_err(unavailable)?;
    match r.open_table(INFO) {
        Ok(info) => {
            let format = info
                .get(FORMAT_KEY)
                .map_err(unavailable)?
                .map(|g| g.value().to_string());
            Ok(match format.as_deref() {
                Some(FORMAT) => Contents::Ours,
                Some(other) => Contents::Foreign(format!(
                    "store format {other:?} is not supported (this build reads {FORMAT:?})"
                )),
                None => {
                    Contents::Foreign("a redb database without a FluxForge format marker".into())
                }
            })
        }
        Err(TableError::TableDoesNotExist(_)) => {
            match r.list_tables().map_err(unavailable)?.count() {
                0 => Ok(Contents::Empty),
                n => Ok(Contents::Foreign(format!(
                    "a redb database with {n} tables that FluxForge did not create; refusing to use it"
                ))),
            }
        }
        Err(e) => Ok(Contents::Foreign(format!(
            "cannot read its format marker: {e}"
        ))),
    }
}

/// Opens the file, refusing (without writing to it) anything but an empty file, a new redb
/// database or a FluxForge store; marks a new database as ours.
fn open_checked(path: &Path) -> Result<Database> {
    let refuse = |reason: String| StoreError::Open {
        location: path.display().to_string(),
        reason,
    };
    let existing = std::fs::metadata(path)
        .map(|m| m.len() > 0)
        .unwrap_or(false);
    if existing {
        // A read-only look first: opening for writing would already touch the file. A file that
        // needs crash recovery cannot be opened read-only; the writable open below repairs it.
        if let Ok(ro) = redb::ReadOnlyDatabase::open(path)
            && let Contents::Foreign(reason) = classify(&ro)?
        {
            return Err(refuse(reason));
        }
    }
    let db = Database::create(path).map_err(|e| open_error(path, e))?;
    match classify(&db)? {
        Contents::Ours => Ok(db),
        Contents::Foreign(reason) => Err(refuse(reason)),
        Contents::Empty => {
            let mut w = db.begin_write().map_err(unavailable)?;
            w.set_durability(Durability::Immediate)
                .map_err(unavailable)?;
            {
                let mut info = w.open_table(INFO).map_err(unavailable)?;
                info.insert(FORMAT_KEY, FORMAT).map_err(unavailable)?;
                w.open_table(OBJECTS).map_err(unavailable)?;
                w.open_table(META).map_err(unavailable)?;
            }
            w.commit().map_err(unavailable)?;
            Ok(db)
        }
    }
}

fn rev_key(tenant: &str) -> String {
    format!("{REV_PREFIX}{tenant}")
}

#[async_trait]
impl Store for RedbStore {
    fn backend(&self) -> &'static str {
        "redb"
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let key = key.clone();
        self.blocking(move |db| {
            let r = db.begin_read().map_err(unavailable)?;
            let objects = r.open_table(OBJECTS).map_err(unavailable)?;
            let found = objects
                .get((key.tenant(), key.path()))
                .map_err(unavailable)?;
            Ok(found.map(|g| {
                let (version, value) = g.value();
                Versioned {
                    version,
                    value: value.to_vec(),
                }
            }))
        })
        .await
    }

    async fn commit(&self, txn: Txn) -> Result<Version> {
        let tenant = txn.tenant()?.to_string();
        let t = tenant.clone();
        let (revision, paths) = self
            .blocking(move |db| {
                let mut w = db.begin_write().map_err(unavailable)?;
                w.set_durability(Durability::Immediate)
                    .map_err(unavailable)?;
                let rk = rev_key(&t);
                let (revision, paths) = {
                    let mut meta = w.open_table(META).map_err(unavailable)?;
                    if let Some(presented) = txn.fence {
                        let current = meta
                            .get(EPOCH)
                            .map_err(unavailable)?
                            .map_or(0, |g| g.value());
                        if presented != current {
                            return Err(StoreError::Fenced { presented, current });
                        }
                    }
                    let mut objects = w.open_table(OBJECTS).map_err(unavailable)?;
                    for op in &txn.ops {
                        let key = op.key();
                        let found = objects
                            .get((key.tenant(), key.path()))
                            .map_err(unavailable)?
                            .map(|g| g.value().0);
                        if !op.expect().admits(found) {
                            return Err(StoreError::Conflict {
                                key: key.to_string(),
                                expected: op.expect(),
                                found,
                            });
                        }
                    }
                    let current = meta
                        .get(rk.as_str())
                        .map_err(unavailable)?
                        .map_or(0, |g| g.value());
                    let writes = txn.ops.iter().any(|op| !matches!(op, Op::Check { .. }));
                    if !writes {
                        return Ok((current, Vec::new()));
                    }
                    let revision = current + 1;
                    meta.insert(rk.as_str(), revision).map_err(unavailable)?;
                    let mut paths = Vec::with_capacity(txn.ops.len());
                    for op in &txn.ops {
                        match op {
                            Op::Put { key, value, .. } => {
                                objects
                                    .insert(
                                        (key.tenant(), key.path()),
                                        (revision, value.as_slice()),
                                    )
                                    .map_err(unavailable)?;
                                paths.push(key.path().to_string());
                            }
                            Op::Delete { key, .. } => {
                                objects
                                    .remove((key.tenant(), key.path()))
                                    .map_err(unavailable)?;
                                paths.push(key.path().to_string());
                            }
                            Op::Check { .. } => {}
                        }
                    }
                    (revision, paths)
                };
                if paths.is_empty() {
                    w.abort().map_err(unavailable)?;
                } else {
                    w.commit().map_err(unavailable)?;
                }
                Ok((revision, paths))
            })
            .await?;
        if !paths.is_empty() {
            // No receiver is not an error: nobody is waiting.
            let _ = self.changes.send(Change {
                tenant,
                revision,
                paths,
            });
        }
        Ok(revision)
    }

    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        validate_tenant(tenant)?;
        validate_path(prefix, true)?;
        let (tenant, prefix) = (tenant.to_string(), prefix.to_string());
        self.blocking(move |db| {
            let r = db.begin_read().map_err(unavailable)?;
            let objects = r.open_table(OBJECTS).map_err(unavailable)?;
            let mut out = Vec::new();
            for item in objects
                .range((tenant.as_str(), prefix.as_str())..)
                .map_err(unavailable)?
            {
                let (k, v) = item.map_err(unavailable)?;
                let (t, p) = k.value();
                if t != tenant || !p.starts_with(prefix.as_str()) {
                    break;
                }
                let (version, value) = v.value();
                out.push(Entry {
                    key: Key::new(t, p)
                        .map_err(|e| StoreError::Corrupt(format!("stored key {t}:{p}: {e}")))?,
                    version,
                    value: value.to_vec(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<String>> {
        self.blocking(|db| {
            let r = db.begin_read().map_err(unavailable)?;
            let meta = r.open_table(META).map_err(unavailable)?;
            let mut out = Vec::new();
            for item in meta.range(REV_PREFIX..).map_err(unavailable)? {
                let (k, _) = item.map_err(unavailable)?;
                match k.value().strip_prefix(REV_PREFIX) {
                    Some(t) => out.push(t.to_string()),
                    None => break,
                }
            }
            Ok(out)
        })
        .await
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        self.blocking(|db| {
            let r = db.begin_read().map_err(unavailable)?;
            let objects = r.open_table(OBJECTS).map_err(unavailable)?;
            let meta = r.open_table(META).map_err(unavailable)?;
            let epoch = meta
                .get(EPOCH)
                .map_err(unavailable)?
                .map_or(0, |g| g.value());
            let mut revisions = std::collections::BTreeMap::new();
            for item in meta.range(REV_PREFIX..).map_err(unavailable)? {
                let (k, v) = item.map_err(unavailable)?;
                match k.value().strip_prefix(REV_PREFIX) {
                    Some(t) => {
                        revisions.insert(t.to_string(), v.value());
                    }
                    None => break,
                }
            }
            let mut entries = Vec::new();
            for item in objects.iter().map_err(unavailable)? {
                let (k, v) = item.map_err(unavailable)?;
                let (t, p) = k.value();
                let (version, value) = v.value();
                entries.push(Entry {
                    key: Key::new(t, p)
                        .map_err(|e| StoreError::Corrupt(format!("stored key {t}:{p}: {e}")))?,
                    version,
                    value: value.to_vec(),
                });
            }
            Ok(Snapshot {
                epoch,
                revisions,
                entries,
            })
        })
        .await
    }

    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: std::collections::BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        let epoch = self
            .blocking(move |db| {
                let mut w = db.begin_write().map_err(unavailable)?;
                w.set_durability(Durability::Immediate)
                    .map_err(unavailable)?;
                let epoch = {
                    let mut objects = w.open_table(OBJECTS).map_err(unavailable)?;
                    let mut meta = w.open_table(META).map_err(unavailable)?;
                    if !force {
                        let mut held = 0usize;
                        for item in objects.iter().map_err(unavailable)? {
                            let (k, _) = item.map_err(unavailable)?;
                            let (t, p) = k.value();
                            if !crate::keys::is_node_record(t, p) {
                                held += 1;
                            }
                        }
                        if held > 0 {
                            return Err(StoreError::NotEmpty(held));
                        }
                    }
                    // Token revocations in the store survive, read in this same transaction
                    // so that one made while the restore was on its way is not lost.
                    let mut revoked: Vec<(String, u64, Vec<u8>)> = Vec::new();
                    let sys = crate::store::SYSTEM_TENANT;
                    for item in objects
                        .range((sys, crate::keys::REVOKED)..)
                        .map_err(unavailable)?
                    {
                        let (k, v) = item.map_err(unavailable)?;
                        let (t, p) = k.value();
                        if t != sys || !p.starts_with(crate::keys::REVOKED) {
                            break;
                        }
                        let (version, value) = v.value();
                        revoked.push((p.to_string(), version, value.to_vec()));
                    }
                    objects.retain(|_, _| false).map_err(unavailable)?;
                    let mut top = revisions;
                    for e in &entries {
                        objects
                            .insert(
                                (e.key.tenant(), e.key.path()),
                                (e.version, e.value.as_slice()),
                            )
                            .map_err(unavailable)?;
                        let t = top.entry(e.key.tenant().to_string()).or_default();
                        *t = (*t).max(e.version);
                    }
                    for (p, version, value) in &revoked {
                        if objects
                            .get((sys, p.as_str()))
                            .map_err(unavailable)?
                            .is_none()
                        {
                            objects
                                .insert((sys, p.as_str()), (*version, value.as_slice()))
                                .map_err(unavailable)?;
                        }
                    }
                    for (tenant, v) in top {
                        let rk = rev_key(&tenant);
                        let cur = meta
                            .get(rk.as_str())
                            .map_err(unavailable)?
                            .map_or(0, |g| g.value());
                        meta.insert(rk.as_str(), cur.max(v)).map_err(unavailable)?;
                    }
                    let cur = meta
                        .get(EPOCH)
                        .map_err(unavailable)?
                        .map_or(0, |g| g.value());
                    let epoch = cur
                        .max(epoch_floor)
                        .checked_add(1)
                        .ok_or_else(|| StoreError::InvalidTxn("epoch out of range".into()))?;
                    meta.insert(EPOCH, epoch).map_err(unavailable)?;
                    epoch
                };
                w.commit().map_err(unavailable)?;
                Ok(epoch)
            })
            .await?;
        let _ = self.changes.send(Change::resync());
        Ok(epoch)
    }

    async fn next_epoch(&self) -> Result<Epoch> {
        self.update_epoch(|cur| cur + 1).await
    }

    async fn current_epoch(&self) -> Result<Epoch> {
        self.blocking(|db| {
            let r = db.begin_read().map_err(unavailable)?;
            let meta = r.open_table(META).map_err(unavailable)?;
            Ok(meta
                .get(EPOCH)
                .map_err(unavailable)?
                .map_or(0, |g| g.value()))
        })
        .await
    }

    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        self.update_epoch(move |cur| cur.max(floor)).await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn acquire_lease(&self, holder: &str, ttl: std::time::Duration) -> Result<Option<Epoch>> {
        super::validate_holder(holder)?;
        // Held across the epoch update, so two contenders cannot both move the epoch.
        let mut lease = self.lease.lock().await;
        let now = std::time::Instant::now();
        match lease.as_mut() {
            // An epoch raised under the lease (a restore) ends the term: fall through to a new one.
            Some((h, e, exp)) if h == holder && *exp > now && self.current_epoch().await? <= *e => {
                *exp = now + ttl;
                return Ok(Some(*e));
            }
            Some((h, _, exp)) if h == holder && *exp > now => {}
            Some((_, _, exp)) if *exp > now => return Ok(None),
            _ => {}
        }
        // Free or lapsed: a new term. The epoch is durable before the lease is granted.
        let epoch = self.next_epoch().await?;
        *lease = Some((holder.to_string(), epoch, now + ttl));
        Ok(Some(epoch))
    }

    async fn release_lease(&self, holder: &str) -> Result<()> {
        let mut lease = self.lease.lock().await;
        if lease.as_ref().is_some_and(|(h, _, _)| h == holder) {
            *lease = None;
        }
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        let lease = self.lease.lock().await;
        Ok(lease
            .as_ref()
            .filter(|(_, _, exp)| *exp > std::time::Instant::now())
            .map(|(h, e, _)| (h.clone(), *e)))
    }
}
