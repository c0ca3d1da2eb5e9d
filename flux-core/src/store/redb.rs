//! Embedded backend on a single redb file: the default for one node.
//!
//! Every write goes through one writer thread (redb allows one writer at a time). It takes the
//! first waiting request, then every request already queued behind it (up to [`MAX_BATCH`]), and
//! applies them in order inside one redb write transaction committed with
//! [`Durability::Immediate`]: one fsync for the whole batch, and no added delay when the store is
//! idle (a lone commit is a batch of one). Each transaction of a batch is still checked on its own
//! (fence, then every expectation, against the state the earlier ones left) before any of its
//! writes, so a conflicting or fenced one fails alone and leaves no trace while the others commit.
//! No caller is answered, and no change is announced, before the fsync that covers its
//! transaction: an acknowledged write survives `kill -9` of the process. An I/O error fails the
//! whole batch (nothing of it is written). Epoch changes go through the same queue, so a
//! transaction queued after an epoch change is fenced against the new epoch. The file is locked
//! by redb, so a second process cannot open it while the first holds it.
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
    Change, Entry, Epoch, Key, Op, Range, Result, Snapshot, Store, StoreError, Txn, Version,
    Versioned, validate_path, validate_tenant,
};

const OBJECTS: TableDefinition<(&str, &str), (u64, &[u8])> = TableDefinition::new("objects");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const INFO: TableDefinition<&str, &str> = TableDefinition::new("info");

const FORMAT_KEY: &str = "format";
/// Marker written into every FluxForge redb file; a file without it is refused.
pub const FORMAT: &str = "fluxforge-store/1";
const EPOCH: &str = "epoch";
const PROBE: &str = "probe";
const REV_PREFIX: &str = "rev/";

/// Most requests one write transaction gathers.
pub const MAX_BATCH: usize = 512;
/// Most bytes of values one write transaction gathers (a batch of one may exceed it).
const MAX_BATCH_BYTES: usize = 16 << 20;

/// What the writer thread is asked to do.
enum Work {
    Commit(Txn, tokio::sync::oneshot::Sender<Result<Version>>),
    Epoch(
        Box<dyn FnOnce(Epoch) -> Epoch + Send>,
        tokio::sync::oneshot::Sender<Result<Epoch>>,
    ),
}

/// The embedded store.
pub struct RedbStore {
    slot: Arc<Slot>,
    path: PathBuf,
    changes: broadcast::Sender<Arc<Change>>,
    /// Queue of the writer thread; `None` once the store is being dropped.
    writer: Option<std::sync::mpsc::Sender<Work>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    /// Write transactions (fsyncs) and requests applied by the writer thread.
    stats: Arc<super::BatchStats>,
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
        RedbStore::open_with_cache(path, None).await
    }

    /// [`RedbStore::open`] with redb's page cache (read cache and write buffer together) held
    /// to `cache` bytes instead of redb's default of 1 GiB.
    pub async fn open_with_cache(
        path: impl AsRef<Path>,
        cache: Option<usize>,
    ) -> Result<RedbStore> {
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
            open_checked(&p, None, cache)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("redb open task failed: {e}")))??;
        RedbStore::start(path, db, None, cache)
    }

    /// Opens a store whose file writes and syncs fail with "no space left on device" while
    /// `faults` says so, as on a full disk (tests only).
    #[cfg(feature = "testing")]
    pub async fn open_with_faults(
        path: impl AsRef<Path>,
        faults: Arc<IoFaults>,
    ) -> Result<RedbStore> {
        let path = path.as_ref().to_path_buf();
        let (p, f) = (path.clone(), faults.clone());
        let db = tokio::task::spawn_blocking(move || open_checked(&p, Some(&f), None))
            .await
            .map_err(|e| StoreError::Unavailable(format!("redb open task failed: {e}")))??;
        RedbStore::start(path, db, Some(faults), None)
    }

    fn start(
        path: PathBuf,
        db: Database,
        faults: Option<Arc<IoFaults>>,
        cache: Option<usize>,
    ) -> Result<RedbStore> {
        let (changes, _) = broadcast::channel(4096);
        let slot = Arc::new(Slot {
            db: std::sync::RwLock::new(Some(Arc::new(db))),
            path: path.clone(),
            faults,
            cache,
            unwritable: std::sync::Mutex::new(None),
        });
        let (writer, queue) = std::sync::mpsc::channel();
        let stats = Arc::new(super::BatchStats::default());
        let (wslot, wchanges, wstats) = (slot.clone(), changes.clone(), stats.clone());
        let writer_thread = std::thread::Builder::new()
            .name("redb-writer".into())
            .spawn(move || write_loop(&wslot, &queue, &wchanges, &wstats))
            .map_err(|e| StoreError::Open {
                location: path.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            })?;
        Ok(RedbStore {
            slot,
            path,
            changes,
            writer: Some(writer),
            writer_thread: Some(writer_thread),
            stats,
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
        let db = self.slot.current()?;
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Unavailable(format!("redb task failed: {e}")))?
    }

    /// Runs a small read on the calling thread: a point read is a few microseconds from redb's
    /// cache, less than handing it to the blocking pool and back (which showed as the largest
    /// cost in profiles: thread wake-ups). Scans keep using [`RedbStore::blocking`].
    fn inline<T>(&self, f: impl FnOnce(&Database) -> Result<T>) -> Result<T> {
        let db = self.slot.current()?;
        f(&db)
    }

    async fn update_epoch(&self, f: impl FnOnce(Epoch) -> Epoch + Send + 'static) -> Result<Epoch> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Work::Epoch(Box::new(f), tx))?;
        rx.await.map_err(|_| writer_gone())?
    }

    fn send(&self, work: Work) -> Result<()> {
        self.writer
            .as_ref()
            .and_then(|w| w.send(work).ok())
            .ok_or_else(writer_gone)
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        // Closing the queue ends the writer thread once it has answered what was queued; joining
        // it releases its handle on the file, so the store can be opened again at once.
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}

fn writer_gone() -> StoreError {
    StoreError::Unavailable("redb: the writer thread has stopped".into())
}

/// What one request of a batch produced, before the batch is durable.
enum Outcome {
    Committed {
        tx: tokio::sync::oneshot::Sender<Result<Version>>,
        revision: Version,
        change: Option<Change>,
    },
    Failed(tokio::sync::oneshot::Sender<Result<Version>>, StoreError),
    Epoch(tokio::sync::oneshot::Sender<Result<Epoch>>, Epoch),
}

/// The writer thread: one redb write transaction, one fsync, per batch of queued requests.
fn write_loop(
    slot: &Slot,
    queue: &std::sync::mpsc::Receiver<Work>,
    changes: &broadcast::Sender<Arc<Change>>,
    stats: &super::BatchStats,
) {
    use std::sync::mpsc::RecvTimeoutError;
    let mut next = None;
    loop {
        let first = match next.take() {
            Some(w) => w,
            // While writes fail, try one now and then even without traffic, so readiness
            // comes back on its own once the disk has room again.
            None if slot.unwritable().is_some() => match queue.recv_timeout(PROBE_EVERY) {
                Ok(w) => w,
                Err(RecvTimeoutError::Timeout) => {
                    slot.probe();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            },
            None => match queue.recv() {
                Ok(w) => w,
                Err(_) => return,
            },
        };
        let mut batch = vec![first];
        let mut bytes = batch_bytes(&batch[0]);
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match queue.try_recv() {
                Ok(w) => {
                    bytes += batch_bytes(&w);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        if bytes > MAX_BATCH_BYTES && batch.len() > 1 {
            next = batch.pop();
        }
        stats.record(batch.len());
        let db = match slot.current_or_reopen() {
            Ok(db) => db,
            Err(e) => {
                for w in batch {
                    Waiter::of(w).fail(e.clone_message());
                }
                continue;
            }
        };
        let applied = apply_batch(&db, batch);
        drop(db);
        match applied {
            Ok(outcomes) => {
                slot.set_writable();
                for o in outcomes {
                    match o {
                        Outcome::Committed {
                            tx,
                            revision,
                            change,
                        } => {
                            if let Some(c) = change {
                                // No receiver is not an error: nobody is waiting.
                                let _ = changes.send(Arc::new(c));
                            }
                            let _ = tx.send(Ok(revision));
                        }
                        Outcome::Failed(tx, e) => {
                            let _ = tx.send(Err(e));
                        }
                        Outcome::Epoch(tx, e) => {
                            let _ = tx.send(Ok(e));
                        }
                    }
                }
            }
            Err((senders, e)) => {
                for s in senders {
                    s.fail(StoreError::Unavailable(e.clone()));
                }
                // redb refuses every later write after an I/O error until the file is opened
                // again: reopen now, so writes succeed once the cause (a full disk) is gone.
                slot.set_unwritable(&e);
                slot.reopen();
                // A commit that failed at its fsync may be on disk all the same, and its
                // notices were not sent: subscribers read afresh.
                let _ = changes.send(Arc::new(Change::resync()));
            }
        }
    }
}

fn batch_bytes(w: &Work) -> usize {
    match w {
        Work::Commit(txn, _) => txn
            .ops
            .iter()
            .map(|op| match op {
                Op::Put { value, .. } | Op::Append { value, .. } => {
                    value.len() + op.key().path().len()
                }
                _ => op.key().path().len(),
            })
            .sum(),
        Work::Epoch(..) => 0,
    }
}

/// A caller to answer with the batch's error.
enum Waiter {
    Commit(tokio::sync::oneshot::Sender<Result<Version>>),
    Epoch(tokio::sync::oneshot::Sender<Result<Epoch>>),
}

impl Waiter {
    fn fail(self, e: StoreError) {
        match self {
            Waiter::Commit(tx) => {
                let _ = tx.send(Err(e));
            }
            Waiter::Epoch(tx) => {
                let _ = tx.send(Err(e));
            }
        }
    }
}

impl Waiter {
    fn of(w: Work) -> Waiter {
        match w {
            Work::Commit(_, tx) => Waiter::Commit(tx),
            Work::Epoch(_, tx) => Waiter::Epoch(tx),
        }
    }
}

impl StoreError {
    fn clone_message(&self) -> StoreError {
        StoreError::Unavailable(match self {
            StoreError::Unavailable(m) => m.clone(),
            other => other.to_string(),
        })
    }
}

impl Outcome {
    fn waiter(self) -> Waiter {
        match self {
            Outcome::Committed { tx, .. } | Outcome::Failed(tx, _) => Waiter::Commit(tx),
            Outcome::Epoch(tx, _) => Waiter::Epoch(tx),
        }
    }
}

type BatchError = (Vec<Waiter>, String);

/// Applies a batch in order inside one write transaction and makes it durable. On an I/O error
/// nothing of the batch is written and every caller is returned with the error.
fn apply_batch(db: &Database, batch: Vec<Work>) -> std::result::Result<Vec<Outcome>, BatchError> {
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(batch.len());
    let mut pending = batch.into_iter();
    let fail = |outcomes: Vec<Outcome>, rest: std::vec::IntoIter<Work>, e: StoreError| {
        let mut waiters: Vec<Waiter> = outcomes.into_iter().map(Outcome::waiter).collect();
        waiters.extend(rest.map(Waiter::of));
        let msg = match e {
            StoreError::Unavailable(m) => m,
            other => other.to_string(),
        };
        (waiters, msg)
    };
    let mut w = match db.begin_write() {
        Ok(w) => w,
        Err(e) => return Err(fail(outcomes, pending, unavailable(e))),
    };
    if let Err(e) = w.set_durability(Durability::Immediate) {
        return Err(fail(outcomes, pending, unavailable(e)));
    }
    let mut wrote = false;
    {
        let (mut meta, mut objects) = match (w.open_table(META), w.open_table(OBJECTS)) {
            (Ok(m), Ok(o)) => (m, o),
            (Err(e), _) | (_, Err(e)) => return Err(fail(outcomes, pending, unavailable(e))),
        };
        while let Some(work) = pending.next() {
            match work {
                Work::Commit(txn, tx) => match apply_txn(&mut meta, &mut objects, &txn) {
                    Ok((revision, change)) => {
                        wrote |= change.is_some();
                        outcomes.push(Outcome::Committed {
                            tx,
                            revision,
                            change,
                        });
                    }
                    Err(e @ StoreError::Unavailable(_)) => {
                        outcomes.push(Outcome::Failed(tx, StoreError::Unavailable(String::new())));
                        return Err(fail(outcomes, pending, e));
                    }
                    Err(e) => outcomes.push(Outcome::Failed(tx, e)),
                },
                Work::Epoch(f, tx) => {
                    let step = meta
                        .get(EPOCH)
                        .map_err(unavailable)
                        .map(|g| g.map_or(0, |g| g.value()))
                        .and_then(|cur| {
                            let next = f(cur);
                            meta.insert(EPOCH, next).map_err(unavailable)?;
                            Ok(next)
                        });
                    match step {
                        Ok(e) => {
                            wrote = true;
                            outcomes.push(Outcome::Epoch(tx, e));
                        }
                        Err(e) => {
                            outcomes.push(Outcome::Epoch(tx, 0));
                            return Err(fail(outcomes, pending, e));
                        }
                    }
                }
            }
        }
    }
    let done = if wrote {
        w.commit().map_err(unavailable)
    } else {
        w.abort().map_err(unavailable)
    };
    match done {
        Ok(()) => Ok(outcomes),
        Err(e) => Err(fail(outcomes, Vec::new().into_iter(), e)),
    }
}

/// Checks one transaction (fence, then every expectation) against the batch's state so far, and
/// only then applies its writes. Returns the revision and the change to announce, if it wrote.
fn apply_txn(
    meta: &mut redb::Table<&str, u64>,
    objects: &mut redb::Table<(&str, &str), (u64, &[u8])>,
    txn: &Txn,
) -> Result<(Version, Option<Change>)> {
    let tenant = txn.tenant()?;
    if let Some(presented) = txn.fence {
        let current = meta
            .get(EPOCH)
            .map_err(unavailable)?
            .map_or(0, |g| g.value());
        if presented != current {
            return Err(StoreError::Fenced { presented, current });
        }
    }
    for op in &txn.ops {
        if matches!(op, Op::Append { .. }) {
            continue;
        }
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
    let rk = rev_key(tenant);
    let current = meta
        .get(rk.as_str())
        .map_err(unavailable)?
        .map_or(0, |g| g.value());
    if txn.ops.iter().all(|op| matches!(op, Op::Check { .. })) {
        return Ok((current, None));
    }
    let revision = current + 1;
    meta.insert(rk.as_str(), revision).map_err(unavailable)?;
    let mut paths = Vec::with_capacity(txn.ops.len());
    let mut deleted = Vec::new();
    let indexes = txn.append_indexes();
    for (op, index) in txn.ops.iter().zip(indexes) {
        match op {
            Op::Append { key, value } => {
                let path = super::append_path(key.path(), revision, index.unwrap_or_default());
                objects
                    .insert((key.tenant(), path.as_str()), (revision, value.as_slice()))
                    .map_err(unavailable)?;
                paths.push(path);
            }
            Op::Put { key, value, .. } => {
                objects
                    .insert((key.tenant(), key.path()), (revision, value.as_slice()))
                    .map_err(unavailable)?;
                paths.push(key.path().to_string());
            }
            Op::Delete { key, .. } => {
                objects
                    .remove((key.tenant(), key.path()))
                    .map_err(unavailable)?;
                paths.push(key.path().to_string());
                deleted.push(key.path().to_string());
            }
            Op::Check { .. } => {}
        }
    }
    Ok((
        revision,
        Some(Change {
            tenant: tenant.to_string(),
            revision,
            paths,
            deleted,
        }),
    ))
}

/// How often a store whose writes fail tries a write of its own.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a reopen waits for readers to let go of the old handle.
const REOPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The open database, shared by readers and the writer thread. Empty while the writer opens the
/// file again after a failed write.
struct Slot {
    db: std::sync::RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    faults: Option<Arc<IoFaults>>,
    /// The page cache's bytes, when not redb's default.
    cache: Option<usize>,
    /// Why writes fail, while they do.
    unwritable: std::sync::Mutex<Option<String>>,
}

impl Slot {
    fn current(&self) -> Result<Arc<Database>> {
        self.db
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(
                    "redb: the store file is being opened again after a failed write".into(),
                )
            })
    }

    fn current_or_reopen(&self) -> Result<Arc<Database>> {
        match self.current() {
            Ok(db) => Ok(db),
            Err(_) => {
                self.reopen();
                self.current().map_err(|_| {
                    StoreError::Unavailable(format!(
                        "redb: cannot open the store file again: {}",
                        self.unwritable().unwrap_or_default()
                    ))
                })
            }
        }
    }

    fn unwritable(&self) -> Option<String> {
        self.unwritable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_unwritable(&self, reason: &str) {
        let mut u = self.unwritable.lock().unwrap_or_else(|p| p.into_inner());
        if u.is_none() {
            tracing::error!(path = %self.path.display(), reason, "the store cannot commit writes");
        }
        *u = Some(reason.to_string());
    }

    fn set_writable(&self) {
        let mut u = self.unwritable.lock().unwrap_or_else(|p| p.into_inner());
        if u.take().is_some() {
            tracing::info!(path = %self.path.display(), "the store commits writes again");
        }
    }

    /// Closes the database and opens the file again (redb repairs it if needed). Waits for
    /// readers to drop the old handle first, since the file is locked while it is open.
    fn reopen(&self) {
        let mut slot = self.db.write().unwrap_or_else(|p| p.into_inner());
        if let Some(mut old) = slot.take() {
            let deadline = std::time::Instant::now() + REOPEN_WAIT;
            loop {
                match Arc::try_unwrap(old) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(still) if std::time::Instant::now() < deadline => {
                        old = still;
                        std::thread::sleep(std::time::Duration::from_millis(5));
                    }
                    Err(still) => {
                        *slot = Some(still);
                        return;
                    }
                }
            }
        }
        match open_checked(&self.path, self.faults.as_ref(), self.cache) {
            Ok(db) => *slot = Some(Arc::new(db)),
            Err(e) => {
                drop(slot);
                self.set_unwritable(&e.to_string());
            }
        }
    }

    /// A durable write of its own (a counter in the meta table, which no reader sees): marks
    /// the store writable when it succeeds.
    fn probe(&self) {
        let db = match self.current_or_reopen() {
            Ok(db) => db,
            Err(_) => return,
        };
        let step = || -> Result<()> {
            let mut w = db.begin_write().map_err(unavailable)?;
            w.set_durability(Durability::Immediate)
                .map_err(unavailable)?;
            {
                let mut meta = w.open_table(META).map_err(unavailable)?;
                let n = meta
                    .get(PROBE)
                    .map_err(unavailable)?
                    .map_or(0, |g| g.value());
                meta.insert(PROBE, n.wrapping_add(1)).map_err(unavailable)?;
            }
            w.commit().map_err(unavailable)
        };
        let outcome = step();
        drop(db);
        match outcome {
            Ok(()) => self.set_writable(),
            Err(e) => {
                self.set_unwritable(&e.to_string());
                self.reopen();
            }
        }
    }
}

/// Switch for the write failures of a store opened with `RedbStore::open_with_faults`.
#[derive(Debug, Default)]
pub struct IoFaults {
    fail_writes: std::sync::atomic::AtomicBool,
}

impl IoFaults {
    /// From now on, file writes, resizes and syncs fail (`true`) or work again (`false`).
    pub fn fail_writes(&self, on: bool) {
        self.fail_writes
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self) -> std::result::Result<(), std::io::Error> {
        if self.fail_writes.load(std::sync::atomic::Ordering::SeqCst) {
            // ENOSPC, as on a full disk.
            Err(std::io::Error::from_raw_os_error(28))
        } else {
            Ok(())
        }
    }
}

/// A file backend whose writes fail on demand.
#[derive(Debug)]
struct FaultyFile {
    inner: redb::backends::FileBackend,
    faults: Arc<IoFaults>,
}

type Bound64 = std::ops::Bound<u64>;

impl redb::StorageBackend for FaultyFile {
    fn len(&self) -> std::result::Result<u64, std::io::Error> {
        self.inner.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> std::result::Result<(), std::io::Error> {
        self.inner.read(offset, out)
    }
    fn set_len(&self, len: u64) -> std::result::Result<(), std::io::Error> {
        self.faults.check()?;
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> std::result::Result<(), std::io::Error> {
        self.faults.check()?;
        self.inner.sync_data()
    }
    fn write(&self, offset: u64, data: &[u8]) -> std::result::Result<(), std::io::Error> {
        self.faults.check()?;
        self.inner.write(offset, data)
    }
    fn close(&self) -> std::result::Result<(), std::io::Error> {
        self.inner.close()
    }
    fn try_lock_range(
        &self,
        a: Bound64,
        b: Bound64,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.inner.try_lock_range(a, b)
    }
    fn try_lock_shared_range(
        &self,
        a: Bound64,
        b: Bound64,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.inner.try_lock_shared_range(a, b)
    }
    fn lock_range(&self, a: Bound64, b: Bound64) -> std::result::Result<(), redb::BackendError> {
        self.inner.lock_range(a, b)
    }
    fn lock_shared_range(
        &self,
        a: Bound64,
        b: Bound64,
    ) -> std::result::Result<(), redb::BackendError> {
        self.inner.lock_shared_range(a, b)
    }
    fn unlock_range(&self, a: Bound64, b: Bound64) -> std::result::Result<(), redb::BackendError> {
        self.inner.unlock_range(a, b)
    }
    fn query_lock_range(
        &self,
        a: Bound64,
        b: Bound64,
    ) -> std::result::Result<bool, redb::BackendError> {
        self.inner.query_lock_range(a, b)
    }
}

/// A range read of at most this many entries runs on the calling thread
/// ([`RedbStore::inline`]); a longer one on the blocking pool.
const INLINE_RANGE: usize = 64;

/// A stored object as a listing returns it (a key that no longer parses is corruption).
fn stored_entry(tenant: &str, path: &str, version: Version, value: &[u8]) -> Result<Entry> {
    Ok(Entry {
        key: Key::new(tenant, path)
            .map_err(|e| StoreError::Corrupt(format!("stored key {tenant}:{path}: {e}")))?,
        version,
        value: value.to_vec(),
    })
}

/// One row of the objects table as a range read yields it: its key and its value.
type Row<'a> = (
    redb::AccessGuard<'a, (&'static str, &'static str)>,
    redb::AccessGuard<'a, (u64, &'static [u8])>,
);

/// Reads `range` of `tenant`'s objects (see [`Store::list_range`]). Values are copied out: a
/// range read small enough to run on the calling thread copies at most `INLINE_RANGE` of them.
fn read_range(db: &Database, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
    use std::ops::Bound::{Excluded, Included};
    let r = db.begin_read().map_err(unavailable)?;
    let objects = r.open_table(OBJECTS).map_err(unavailable)?;
    let t = tenant;
    let end = range.prefix_end();
    let low = match &range.start_after {
        Some(a) if !range.reverse && a.as_str() >= range.prefix.as_str() => {
            Excluded((t, a.as_str()))
        }
        _ => Included((t, range.prefix.as_str())),
    };
    let high = match &range.start_after {
        Some(a) if range.reverse && a.as_str() < end.as_str() => Excluded((t, a.as_str())),
        _ => Excluded((t, end.as_str())),
    };
    let mut out = Vec::with_capacity(range.limit.min(1024));
    if range.limit == 0 || low_above_high(&low, &high) {
        return Ok(out);
    }
    let iter = objects
        .range::<(&str, &str)>((low, high))
        .map_err(unavailable)?;
    let mut push = |item: std::result::Result<_, redb::StorageError>| -> Result<bool> {
        let (k, v): Row<'_> = item.map_err(unavailable)?;
        let (t, p) = k.value();
        if range.admits(p) {
            let (version, value) = v.value();
            out.push(stored_entry(t, p, version, value)?);
        }
        Ok(out.len() < range.limit)
    };
    if range.reverse {
        for item in iter.rev() {
            if !push(item)? {
                break;
            }
        }
    } else {
        for item in iter {
            if !push(item)? {
                break;
            }
        }
    }
    Ok(out)
}

/// Opens the database file, through the fault switch when there is one.
fn create_db(
    path: &Path,
    faults: Option<&Arc<IoFaults>>,
    cache: Option<usize>,
) -> std::result::Result<Database, redb::DatabaseError> {
    let mut builder = redb::Builder::new();
    if let Some(bytes) = cache {
        builder.set_cache_size(bytes);
    }
    match faults {
        None => builder.create(path),
        Some(f) => {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| redb::DatabaseError::Storage(redb::StorageError::Io(e)))?;
            let inner = redb::backends::FileBackend::new(file)?;
            builder.create_with_backend(FaultyFile {
                inner,
                faults: f.clone(),
            })
        }
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
fn open_checked(
    path: &Path,
    faults: Option<&Arc<IoFaults>>,
    cache: Option<usize>,
) -> Result<Database> {
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
    let db = create_db(path, faults, cache).map_err(|e| open_error(path, e))?;
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

/// Whether a range's lower bound lies above its upper one (redb refuses such a range).
fn low_above_high(
    low: &std::ops::Bound<(&str, &str)>,
    high: &std::ops::Bound<(&str, &str)>,
) -> bool {
    use std::ops::Bound::{Excluded, Included};
    match (low, high) {
        (Included(l) | Excluded(l), Excluded(h)) => l >= h,
        (Excluded(l), Included(h)) => l >= h,
        (Included(l), Included(h)) => l > h,
        _ => false,
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

    fn unwritable(&self) -> Option<String> {
        self.slot.unwritable()
    }

    fn commit_batches(&self) -> Option<(u64, u64)> {
        Some(self.stats.get())
    }

    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        let key = key.clone();
        self.inline(move |db| {
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
    }

    async fn commit(&self, txn: Txn) -> Result<Version> {
        // Shape errors are the caller's: answer them without queueing.
        txn.tenant()?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Work::Commit(txn, tx))?;
        rx.await.map_err(|_| writer_gone())?
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
                out.push(stored_entry(t, p, version, value)?);
            }
            Ok(out)
        })
        .await
    }

    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        validate_tenant(tenant)?;
        range.validate()?;
        if range.limit <= INLINE_RANGE {
            // As cheap as a few point reads: on the calling thread, like `get`.
            return self.inline(|db| read_range(db, tenant, range));
        }
        let (tenant, range) = (tenant.to_string(), range.clone());
        self.blocking(move |db| read_range(db, &tenant, &range))
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
                entries.push(stored_entry(t, p, version, value)?);
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
        // The writer thread may not have sent the notices of a batch it committed just before
        // the restore. One step through its queue lets those out first, so that no notice from
        // before the restore follows the resync (a subscriber that trusts what it has seen
        // since, the inbox hub's memory, would take it for the present).
        let _ = self.update_epoch(|e| e).await;
        let _ = self.changes.send(Arc::new(Change::resync()));
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

    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
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
