//! The audit log: every API call that changes something, appended to a per-tenant hash chain.
//!
//! Record `n` of a tenant is stored at `audit/<n>` and carries the MAC of record `n-1`; its own
//! MAC (HMAC-SHA-256 with a key derived from the token signing key, which the store never
//! holds) covers every other field. The tenant's `audit_head` names the last record and its MAC,
//! and is MAC'd itself. [`Audit::verify`] walks the chain: an edited record no longer matches its
//! MAC (and without the key nobody can compute a new one), a deleted one leaves a gap or a
//! broken link, a truncated tail disagrees with the head, and a forged head fails its MAC.
//!
//! Cutting the newest records *and* the head back together (for example by putting back an
//! older copy of the whole store) leaves a chain that is consistent in itself. That is caught
//! against a [`Checkpoint`] from an earlier verification. Each node keeps the checkpoints it has
//! seen in a file of its own, outside the store and MAC'd ([`Audit::load_checkpoints`]), so
//! they survive a restart and rewriting the store cannot undo them.
//!
//! A restore through the API legitimately shortens chains. It writes a MAC'd restore mark
//! whose generation goes up by one with every restore ([`Audit::next_restore_mark`]). Each
//! checkpoint remembers the generation it was taken under. When the mark is newer, the
//! checkpoint is superseded and the verification says so in its `note`. When the mark is older
//! than a checkpoint, the store was rolled back behind the node's back, and the verification
//! fails.
//!
//! Appends are batched: records offered at the same time are written in one transaction per
//! tenant (one fsync), and each caller is answered only once its record is durable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::model::Millis;
use crate::store::{DynStore, Entry, Expect, Key, Range, SYSTEM_TENANT, StoreError, Txn};

mod export;
mod verify;

pub use export::{Anchor, ExportCheck, ExportFile, ExportHeader, MAX_EXPORT, prune_to};
pub use verify::Walk;

/// Hash of the record before the first.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = crate::keys::AUDIT_HEAD;
const PREFIX: &str = crate::keys::AUDIT;
/// Where the restore mark lives (tenant `_system`).
pub const RESTORE_MARK: &str = "audit_restore";
/// What the audit key is derived for from the token signing key.
pub const KEY_PURPOSE: &str = "fluxforge audit chain v1";

type HmacSha256 = Hmac<sha2::Sha256>;

/// HMAC-SHA-256 under `key` over the JSON encoding of `what`, in hex.
fn mac_of(key: &[u8; 32], what: &impl Serialize) -> String {
    let body = serde_json::to_vec(what).expect("audit values serialise");
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    mac.update(&body);
    hex::encode(mac.finalize().into_bytes())
}

fn record_path(seq: u64) -> String {
    crate::keys::audit_record(seq)
}

/// What happened, as the caller offers it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Millis,
    /// Token subject.
    pub actor: String,
    pub tenant: String,
    /// `POST /v1/jobs` etc.: method and route.
    pub action: String,
    /// The request path (names the object).
    pub object: String,
    /// HTTP status of the answer.
    pub status: u16,
    /// Version of the object written, when the API reports one.
    pub version: Option<u64>,
    /// The caller's token: its id (`jti`, what `token revoke` names), role and issuer. A
    /// subject alone can be chosen freely by whoever issues tokens; these say which token
    /// made the call. Absent in records written before they were kept: a field that is `None`
    /// is left out of the encoding the MAC covers, so those records still verify.
    pub jti: Option<String>,
    pub role: Option<String>,
    pub issuer: Option<String>,
}

/// One link of the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub seq: u64,
    #[serde(flatten)]
    pub event: Event,
    pub prev_hash: String,
    pub hash: String,
}

impl Record {
    /// The MAC this record must carry: HMAC-SHA-256 under `key` over its sequence number,
    /// event and link.
    pub fn compute_hash(&self, key: &[u8; 32]) -> String {
        mac_of(key, &(self.seq, &self.event, &self.prev_hash))
    }
}

/// A point of a chain known good: the record `seq` had MAC `hash`, while the store's restore
/// mark was at `generation`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
    #[serde(default)]
    pub generation: u64,
}

impl Checkpoint {
    /// Whether `self` is at least as far along as `other` (same or later restore generation,
    /// and no earlier record within one).
    fn covers(&self, other: &Checkpoint) -> bool {
        (self.generation, self.seq) >= (other.generation, other.seq)
    }
}

#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    /// MAC over the tenant, `seq` and `hash` (absent in heads written by earlier versions).
    mac: Option<String>,
}

impl Head {
    fn signed(key: &[u8; 32], tenant: &str, seq: u64, hash: String) -> Head {
        let mac = mac_of(key, &("audit head", tenant, seq, &hash));
        Head {
            seq,
            hash,
            mac: Some(mac),
        }
    }

    fn mac_ok(&self, key: &[u8; 32], tenant: &str) -> Option<bool> {
        let m = self.mac.as_ref()?;
        Some(*m == mac_of(key, &("audit head", tenant, self.seq, &self.hash)))
    }
}

/// The store's restore mark: how many restores went through the API, MAC'd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreMark {
    pub generation: u64,
    pub at: Millis,
    pub mac: String,
}

impl RestoreMark {
    fn new(key: &[u8; 32], generation: u64, at: Millis) -> RestoreMark {
        RestoreMark {
            generation,
            at,
            mac: mac_of(key, &("audit restore", generation, at)),
        }
    }

    fn valid(&self, key: &[u8; 32]) -> bool {
        self.mac == mac_of(key, &("audit restore", self.generation, self.at))
    }
}

/// The checkpoints a node has seen, as kept in its file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckpointFile {
    checkpoints: BTreeMap<String, Checkpoint>,
    mac: String,
}

#[derive(Debug, Default)]
struct Tracker {
    path: Option<PathBuf>,
    checkpoints: BTreeMap<String, Checkpoint>,
    /// Why the checkpoint file cannot be trusted: every tracked verification fails with it.
    broken: Option<String>,
}

/// Result of walking a tenant's chain.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub tenant: String,
    pub records: u64,
    pub ok: bool,
    /// The last record verified, to compare the next verification with.
    pub checkpoint: Option<Checkpoint>,
    /// The first problem found.
    pub problem: Option<String>,
    /// Something worth knowing about a chain that verified: it was shortened by a restore
    /// through the API since it was last verified.
    pub note: Option<String>,
    /// How many records this verification read (fewer than `records` when it started from a
    /// checkpoint or from the chain's base).
    #[serde(default)]
    pub walked: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("audit append kept conflicting; retry")]
    Busy,
    /// The chain (or its base or export mark) does not verify, so it is not exported or pruned.
    #[error("the audit chain of tenant {tenant} does not verify: {problem}")]
    Broken { tenant: String, problem: String },
}

type Pending = (Event, oneshot::Sender<Result<u64, String>>);

/// The audit log of a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Audit {
    store: DynStore,
    key: [u8; 32],
    tx: mpsc::Sender<Pending>,
    tracker: Arc<Mutex<Tracker>>,
}

impl Audit {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(store: DynStore, key: [u8; 32]) -> Audit {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(writer(store.clone(), key, rx));
        Audit {
            store,
            key,
            tx,
            tracker: Arc::default(),
        }
    }

    /// The key this cluster's backups are signed with (derived from the audit key).
    pub fn backup_key(&self) -> crate::backup::BackupKey {
        crate::backup::BackupKey::from_audit_key(&self.key)
    }

    /// Keeps the checkpoints of [`Audit::verify_tracked`] in `path` (on this node, outside the
    /// store), starting from those it holds. If the file does not verify under the audit key
    /// (someone edited it), every tracked verification fails saying so until it is removed.
    pub fn load_checkpoints(&self, path: &Path) -> Result<(), std::io::Error> {
        let mut t = self.tracker.lock().expect("tracker lock");
        t.path = Some(path.to_path_buf());
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        match serde_json::from_slice::<CheckpointFile>(&bytes) {
            Ok(f) if f.mac == mac_of(&self.key, &("audit checkpoints", &f.checkpoints)) => {
                t.checkpoints = f.checkpoints;
            }
            Ok(_) => {
                t.broken = Some(format!(
                    "the checkpoint file {} does not verify: it was altered",
                    path.display()
                ))
            }
            Err(e) => {
                t.broken = Some(format!(
                    "the checkpoint file {} is unreadable: {e}",
                    path.display()
                ))
            }
        }
        Ok(())
    }

    /// Tenants this node holds a checkpoint of (a tenant whose every record was removed from
    /// the store is still checked).
    pub fn tracked_tenants(&self) -> Vec<String> {
        let t = self.tracker.lock().expect("tracker lock");
        t.checkpoints.keys().cloned().collect()
    }

    /// [`Audit::verify`] against the checkpoint this node holds of the tenant's chain, which a
    /// good verification moves forward (and writes to the checkpoint file).
    pub async fn verify_tracked(
        &self,
        tenant: &str,
        walk: Walk,
    ) -> Result<Verification, AuditError> {
        let (since, broken) = {
            let t = self.tracker.lock().expect("tracker lock");
            (t.checkpoints.get(tenant).cloned(), t.broken.clone())
        };
        if let Some(problem) = broken {
            return Ok(Verification {
                tenant: tenant.to_string(),
                records: 0,
                ok: false,
                checkpoint: None,
                problem: Some(problem),
                note: None,
                walked: 0,
            });
        }
        let v = self.verify_walk(tenant, since.as_ref(), walk).await?;
        if let Some(c) = v.checkpoint.as_ref().filter(|_| v.ok) {
            let mut t = self.tracker.lock().expect("tracker lock");
            // A slower verification that read the chain earlier must not move it back.
            if t.checkpoints.get(tenant).is_none_or(|old| c.covers(old))
                && since.as_ref() != Some(c)
            {
                t.checkpoints.insert(tenant.to_string(), c.clone());
                if let Some(path) = t.path.clone() {
                    let file = CheckpointFile {
                        mac: mac_of(&self.key, &("audit checkpoints", &t.checkpoints)),
                        checkpoints: t.checkpoints.clone(),
                    };
                    let bytes = serde_json::to_vec(&file).expect("checkpoints serialise");
                    if let Err(e) = crate::files::replace_private(&path, &bytes) {
                        tracing::error!(path = %path.display(), error = %e, "cannot write the audit checkpoint file");
                    }
                }
            }
        }
        Ok(v)
    }

    /// The store's restore mark: its generation (0 when no restore went through the API), or
    /// a problem when it does not verify.
    async fn restore_generation(&self) -> Result<Result<u64, String>, AuditError> {
        let k = Key::new(SYSTEM_TENANT, RESTORE_MARK)?;
        Ok(match self.store.get(&k).await? {
            None => Ok(0),
            Some(v) => match serde_json::from_slice::<RestoreMark>(&v.value) {
                Ok(m) if m.valid(&self.key) => Ok(m.generation),
                _ => Err("the store's restore mark was altered".to_string()),
            },
        })
    }

    /// The restore mark a restore of `backup` writes, in the same step as the backup's objects:
    /// one generation above both the store's and the backup's own mark.
    pub async fn next_restore_mark(
        &self,
        backup: &crate::backup::Backup,
        at: Millis,
    ) -> Result<Entry, AuditError> {
        let k = Key::new(SYSTEM_TENANT, RESTORE_MARK)?;
        let in_store = self.restore_generation().await?.unwrap_or(0);
        let generation_of = |bytes: &[u8]| {
            serde_json::from_slice::<RestoreMark>(bytes)
                .ok()
                .filter(|m| m.valid(&self.key))
                .map_or(0, |m| m.generation)
        };
        let in_backup = backup
            .entries
            .iter()
            .find(|e| e.key == k)
            .map_or(0, |e| generation_of(&e.value));
        let mark = RestoreMark::new(&self.key, in_store.max(in_backup) + 1, at);
        // A version above every one the backup issued in `_system` (the restore raises the
        // counter past it).
        let version = backup
            .entries
            .iter()
            .filter(|e| e.key.tenant() == SYSTEM_TENANT)
            .map(|e| e.version)
            .chain(backup.header.revisions.get(SYSTEM_TENANT).copied())
            .max()
            .unwrap_or(0)
            + 1;
        Ok(Entry {
            key: k,
            version,
            value: serde_json::to_vec(&mark).expect("marks serialise"),
        })
    }

    /// Appends an event and returns its sequence number once it is durable.
    pub async fn append(&self, event: Event) -> Result<u64, AuditError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((event, done))
            .await
            .map_err(|_| AuditError::Stopped)?;
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(m)) => Err(AuditError::Store(StoreError::Unavailable(m))),
            Err(_) => Err(AuditError::Stopped),
        }
    }

    /// Records of a tenant with `seq > after`, oldest first, at most `limit`: one range read
    /// of about `limit` records, whatever the chain's length.
    pub async fn records(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Record>, AuditError> {
        let range = Range::first(PREFIX, limit).after(record_path(after));
        let mut out = Vec::new();
        for e in self.store.list_range(tenant, &range).await? {
            // An unreadable record is shown by `verify`; the readable ones stay listable.
            let Ok(r) = serde_json::from_slice::<Record>(&e.value) else {
                tracing::warn!(key = %e.key, "unreadable audit record skipped");
                continue;
            };
            out.push(r);
        }
        Ok(out)
    }

    /// Walks a tenant's whole chain (from its base, when its oldest records were exported and
    /// pruned) and reports the first break. With `since` (the checkpoint of an earlier
    /// verification), also fails if that record is gone or changed, which is how a chain cut
    /// back together with its head is found; a restore through the API since then (a newer
    /// restore mark) supersedes `since`, and is said in the `note`.
    pub async fn verify(
        &self,
        tenant: &str,
        since: Option<&Checkpoint>,
    ) -> Result<Verification, AuditError> {
        self.verify_walk(tenant, since, Walk::Full).await
    }

    /// [`Audit::verify`] walking as `walk` says: [`Walk::FromCheckpoint`] trusts what `since`
    /// verified, reading the checkpoint's record and the records after it (O(new records)),
    /// and walks the whole chain without a usable checkpoint.
    pub async fn verify_walk(
        &self,
        tenant: &str,
        since: Option<&Checkpoint>,
        walk: Walk,
    ) -> Result<Verification, AuditError> {
        // The chain is read in several steps: a restore, a prune of its oldest records or its
        // very first append in between would look like damage. A failure is read again when
        // any of those moved meanwhile; bounded, as they are rare, and a third reading decides.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let before = self.moving_parts(tenant).await?;
            let v = self
                .verify_once(tenant, since, before.0.clone(), walk)
                .await?;
            if v.ok || attempt >= 3 || self.moving_parts(tenant).await? == before {
                return Ok(v);
            }
        }
    }

    /// What a concurrent restore, prune or first append changes: the restore generation, the
    /// base's version and whether a head exists.
    async fn moving_parts(
        &self,
        tenant: &str,
    ) -> Result<(Result<u64, String>, Option<u64>, bool), AuditError> {
        let generation = self.restore_generation().await?;
        let base = self
            .store
            .get(&Key::new(tenant, crate::keys::AUDIT_BASE)?)
            .await?
            .map(|v| v.version);
        let head = self.store.get(&Key::new(tenant, HEAD)?).await?.is_some();
        Ok((generation, base, head))
    }
}

/// Appends batches: everything queued is written per tenant in one CAS transaction on the head.
async fn writer(store: DynStore, key: [u8; 32], mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 512 {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let mut by_tenant: BTreeMap<String, Vec<Pending>> = BTreeMap::new();
        for p in batch {
            by_tenant.entry(p.0.tenant.clone()).or_default().push(p);
        }
        for (tenant, items) in by_tenant {
            let events: Vec<&Event> = items.iter().map(|(e, _)| e).collect();
            let result = append_batch(&store, &key, &tenant, &events).await;
            for (i, (_, done)) in items.into_iter().enumerate() {
                let _ = done.send(
                    result
                        .as_ref()
                        .map(|first| first + i as u64)
                        .map_err(|e| e.to_string()),
                );
            }
        }
    }
}

async fn append_batch(
    store: &DynStore,
    mac_key: &[u8; 32],
    tenant: &str,
    events: &[&Event],
) -> Result<u64, AuditError> {
    let hk = Key::new(tenant, HEAD)?;
    for _ in 0..64 {
        let (head, expect) = match store.get(&hk).await? {
            Some(v) => (
                serde_json::from_slice::<Head>(&v.value)
                    .map_err(|e| StoreError::Corrupt(format!("{hk}: {e}")))?,
                Expect::Version(v.version),
            ),
            None => (
                Head {
                    seq: 0,
                    hash: GENESIS.to_string(),
                    mac: None,
                },
                Expect::Absent,
            ),
        };
        let mut txn = Txn::new();
        let mut prev = head.hash.clone();
        let mut seq = head.seq;
        for e in events {
            seq += 1;
            let mut r = Record {
                seq,
                event: (*e).clone(),
                prev_hash: prev.clone(),
                hash: String::new(),
            };
            r.hash = r.compute_hash(mac_key);
            prev = r.hash.clone();
            txn = txn.put(
                Key::new(tenant, record_path(seq))?,
                serde_json::to_vec(&r).expect("records serialise"),
                Expect::Absent,
            );
        }
        let new_head = Head::signed(mac_key, tenant, seq, prev);
        txn = txn.put(
            hk.clone(),
            serde_json::to_vec(&new_head).expect("head serialises"),
            expect,
        );
        match store.commit(txn).await {
            Ok(_) => return Ok(head.seq + 1),
            // Another node appended first: read the new head and try again.
            Err(StoreError::Conflict { key, .. }) if key == hk.to_string() => continue,
            // A record already exists past the head: the chain is damaged, retrying cannot help.
            Err(StoreError::Conflict { key, .. }) => {
                return Err(StoreError::Corrupt(format!(
                    "{key} exists beyond the audit head: the chain is damaged"
                ))
                .into());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AuditError::Busy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    async fn audit() -> (tempfile::TempDir, DynStore, Audit) {
        let (dir, store) = crate::testing::temp_redb().await;
        let a = Audit::start(store.clone(), KEY);
        (dir, store, a)
    }

    const KEY: [u8; 32] = [7; 32];

    /// Whether tenant `acme` still has audit record `seq`.
    async fn has_record(s: &DynStore, seq: u64) -> bool {
        s.get(&Key::new("acme", record_path(seq)).unwrap())
            .await
            .unwrap()
            .is_some()
    }

    /// [`Audit::verify_tracked`] of acme's chain, which must answer.
    async fn verified(a: &Audit, walk: Walk) -> Verification {
        a.verify_tracked("acme", walk).await.unwrap()
    }

    /// Rewrites acme's record `seq` as `edit` changes it, as someone with access to the store
    /// (and not to the key) could.
    async fn tamper(s: &DynStore, seq: u64, edit: impl FnOnce(&mut Record)) {
        let k = Key::new("acme", record_path(seq)).unwrap();
        let mut r: Record =
            serde_json::from_slice(&s.get(&k).await.unwrap().unwrap().value).unwrap();
        edit(&mut r);
        put_json(s, k, &r).await;
    }

    /// Writes `v` as JSON at `k`, past every rule of the audit log.
    async fn put_json(s: &DynStore, k: Key, v: &impl Serialize) {
        s.put(k, serde_json::to_vec(v).unwrap(), Expect::Any)
            .await
            .unwrap();
    }

    /// [`Audit::check_export`] of `export` as JSON, which must parse.
    fn checked(a: &Audit, export: &impl Serialize) -> ExportCheck {
        a.check_export(&serde_json::to_vec(export).unwrap())
            .unwrap()
    }

    fn ev(i: u64) -> Event {
        Event {
            at: 1000 + i,
            actor: "alice".into(),
            tenant: "acme".into(),
            action: "POST /v1/jobs".into(),
            object: format!("/v1/jobs/{i}"),
            status: 202,
            version: Some(i),
            jti: Some(format!("jti-{i}")),
            role: Some("operator".into()),
            issuer: Some("fluxforge".into()),
        }
    }

    #[tokio::test]
    async fn concurrent_appends_form_one_unbroken_chain() {
        let (_d, _s, a) = audit().await;
        let mut handles = Vec::new();
        for i in 0..50 {
            let a = a.clone();
            handles.push(tokio::spawn(async move { a.append(ev(i)).await.unwrap() }));
        }
        let mut seqs: Vec<u64> = Vec::new();
        for h in handles {
            seqs.push(h.await.unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 50);
        assert_eq!(a.records("acme", 45, 100).await.unwrap().len(), 5);
        assert!(a.verify("other", None).await.unwrap().ok);
    }

    #[tokio::test]
    async fn edits_deletions_and_truncation_are_found() {
        let (_d, s, a) = audit().await;
        let hk = Key::new("acme", HEAD).unwrap();
        for i in 0..4 {
            a.append(ev(i)).await.unwrap();
        }
        // The head as it was after record 4: a validly signed value to put back later.
        let head4 = s.get(&hk).await.unwrap().unwrap().value;
        a.append(ev(4)).await.unwrap();
        let k3 = Key::new("acme", record_path(3)).unwrap();
        let original = s.get(&k3).await.unwrap().unwrap().value;

        let mut r: Record = serde_json::from_slice(&original).unwrap();
        r.event.actor = "mallory".into();
        put_json(&s, k3.clone(), &r).await;
        let v = a.verify("acme", None).await.unwrap();
        assert_eq!(
            (v.ok, v.problem.as_deref()),
            (false, Some("record 3 was altered"))
        );

        // Re-hashing the edited record (even with the right key) does not help: the next
        // link breaks; without the key not even the record itself verifies.
        r.hash = r.compute_hash(&[0; 32]);
        put_json(&s, k3.clone(), &r).await;
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("record 3 was altered"));
        r.hash = r.compute_hash(&KEY);
        put_json(&s, k3.clone(), &r).await;
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("record 4 does not link"));

        s.delete(k3.clone(), Expect::Any).await.unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("record 3 is missing"));

        s.put(k3, original, Expect::Any).await.unwrap();
        assert!(a.verify("acme", None).await.unwrap().ok);
        let good = a.verify("acme", None).await.unwrap();
        assert!(good.ok);
        let checkpoint = good.checkpoint.clone().unwrap();
        assert_eq!(checkpoint.seq, 5);
        s.delete(Key::new("acme", record_path(5)).unwrap(), Expect::Any)
            .await
            .unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("head names record 5"));
        // A head made up without the key (naming record 4, unsigned or signed with another
        // key) does not verify.
        let r4: Record = serde_json::from_slice(
            &s.get(&Key::new("acme", record_path(4)).unwrap())
                .await
                .unwrap()
                .unwrap()
                .value,
        )
        .unwrap();
        for forged in [
            Head {
                seq: 4,
                hash: r4.hash.clone(),
                mac: None,
            },
            Head::signed(&[1; 32], "acme", 4, r4.hash.clone()),
            // The right key, but another tenant's head.
            Head::signed(&KEY, "globex", 4, r4.hash.clone()),
        ] {
            put_json(&s, hk.clone(), &forged).await;
            let v = a.verify("acme", None).await.unwrap();
            assert!(!v.ok, "{forged:?} passed");
            assert!(v.problem.unwrap().contains("head"));
        }
        // Cut back consistently (record 5 gone and the head of record 4 put back): only the
        // checkpoint of the earlier verification shows it.
        s.put(hk.clone(), head4, Expect::Any).await.unwrap();
        assert!(a.verify("acme", None).await.unwrap().ok);
        let v = a.verify("acme", Some(&checkpoint)).await.unwrap();
        assert!(v.problem.unwrap().contains("cut off"), "{checkpoint:?}");
    }

    /// What the checkpoint file of a node keeps: a chain cut back (records and head together)
    /// while the node was down is caught by a new `Audit` over the same file, as after a
    /// restart; a restore mark newer than the checkpoint supersedes it (and says so); an older
    /// one, or an edited file, fails.
    #[tokio::test]
    async fn checkpoints_kept_in_a_file_catch_a_cut_back_after_a_restart() {
        let (d, s, a) = audit().await;
        let file = d.path().join("audit-checkpoints.json");
        a.load_checkpoints(&file).unwrap();
        let hk = Key::new("acme", HEAD).unwrap();
        for i in 0..3 {
            a.append(ev(i)).await.unwrap();
        }
        let head3 = s.get(&hk).await.unwrap().unwrap().value;
        for i in 3..6 {
            a.append(ev(i)).await.unwrap();
        }
        assert!(verified(&a, Walk::Full).await.ok);
        assert!(file.exists());
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Records 4 to 6 and the head cut back behind the node's back.
        for seq in 4..=6 {
            s.delete(Key::new("acme", record_path(seq)).unwrap(), Expect::Any)
                .await
                .unwrap();
        }
        s.put(hk.clone(), head3.clone(), Expect::Any).await.unwrap();
        // A new process: only the file remembers.
        let restarted = Audit::start(s.clone(), KEY);
        assert!(restarted.verify("acme", None).await.unwrap().ok);
        restarted.load_checkpoints(&file).unwrap();
        assert_eq!(restarted.tracked_tenants(), vec!["acme".to_string()]);
        let v = verified(&restarted, Walk::Full).await;
        assert!(!v.ok);
        assert!(v.problem.unwrap().contains("cut off"));
        // It keeps failing: a bad verification does not move the checkpoint.
        assert!(!verified(&restarted, Walk::Full).await.ok);

        // A restore through the API (a newer mark) supersedes the checkpoint, saying so.
        let backup = crate::backup::Backup {
            header: crate::backup::Header {
                format: crate::backup::FORMAT.into(),
                format_version: crate::backup::FORMAT_VERSION,
                created_at: 1,
                source_backend: "redb".into(),
                epoch: 1,
                revisions: Default::default(),
                key_id: None,
            },
            entries: vec![],
            sha256: String::new(),
        };
        let mark = restarted.next_restore_mark(&backup, 7).await.unwrap();
        let first: RestoreMark = serde_json::from_slice(&mark.value).unwrap();
        assert_eq!(first.generation, 1);
        s.put(mark.key.clone(), mark.value.clone(), Expect::Any)
            .await
            .unwrap();
        let v = verified(&restarted, Walk::Full).await;
        assert!(v.ok, "{v:?}");
        assert!(v.note.unwrap().contains("restored from a backup"));
        assert_eq!(v.checkpoint.unwrap().generation, 1);
        let again = restarted.next_restore_mark(&backup, 8).await.unwrap();
        let second: RestoreMark = serde_json::from_slice(&again.value).unwrap();
        assert_eq!(second.generation, 2);

        // The mark rolled back (deleted) below what the node saw: the store was rewritten.
        s.delete(mark.key.clone(), Expect::Any).await.unwrap();
        let v = verified(&restarted, Walk::Full).await;
        assert!(v.problem.unwrap().contains("rolled back"));
        // A forged mark (no key) is no better.
        let forged = RestoreMark::new(&[0; 32], 5, 9);
        put_json(&s, mark.key.clone(), &forged).await;
        let v = verified(&restarted, Walk::Full).await;
        assert!(v.problem.unwrap().contains("restore mark was altered"));
        s.put(mark.key.clone(), mark.value.clone(), Expect::Any)
            .await
            .unwrap();
        assert!(verified(&restarted, Walk::Full).await.ok);

        // An edited checkpoint file (moved back to record 1) is refused as a whole.
        let mut f: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        f["checkpoints"]["acme"]["seq"] = 1.into();
        std::fs::write(&file, serde_json::to_vec(&f).unwrap()).unwrap();
        let edited = Audit::start(s.clone(), KEY);
        edited.load_checkpoints(&file).unwrap();
        let v = verified(&edited, Walk::Full).await;
        assert!(v.problem.unwrap().contains("was altered"));
    }

    /// Records written before events carried the token's id, role and issuer still verify:
    /// the fields left out are left out of what the MAC covers.
    #[tokio::test]
    async fn records_without_token_fields_still_verify_and_new_ones_carry_them() {
        #[derive(Serialize)]
        struct OldEvent {
            at: Millis,
            actor: String,
            tenant: String,
            action: String,
            object: String,
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            version: Option<u64>,
        }
        let (_d, s, a) = audit().await;
        let old = OldEvent {
            at: 5,
            actor: "alice".into(),
            tenant: "acme".into(),
            action: "POST /v1/jobs".into(),
            object: "/v1/jobs".into(),
            status: 202,
            version: None,
        };
        // As an earlier version wrote record 1 and its (unsigned) head.
        let hash = mac_of(&KEY, &(1u64, &old, GENESIS));
        let rec = serde_json::json!({
            "seq": 1, "at": 5, "actor": "alice", "tenant": "acme", "action": "POST /v1/jobs",
            "object": "/v1/jobs", "status": 202, "prev_hash": GENESIS, "hash": hash,
        });
        s.put(
            Key::new("acme", record_path(1)).unwrap(),
            serde_json::to_vec(&rec).unwrap(),
            Expect::Absent,
        )
        .await
        .unwrap();
        s.put(
            Key::new("acme", HEAD).unwrap(),
            serde_json::to_vec(&serde_json::json!({"seq": 1, "hash": hash})).unwrap(),
            Expect::Absent,
        )
        .await
        .unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.ok, "{v:?}");
        // The next append continues the chain and signs the head.
        a.append(ev(2)).await.unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 2);
        let recs = a.records("acme", 0, 10).await.unwrap();
        assert_eq!(recs[0].event.jti, None);
        assert_eq!(recs[1].event.jti.as_deref(), Some("jti-2"));
        assert_eq!(recs[1].event.role.as_deref(), Some("operator"));
        assert_eq!(recs[1].event.issuer.as_deref(), Some("fluxforge"));
    }

    /// A verification from a checkpoint reads the checkpoint's record and the newer ones
    /// only; a full one reads everything, and so is what finds an edit behind the checkpoint.
    #[tokio::test]
    async fn a_verification_from_its_checkpoint_reads_only_new_records() {
        let (_d, s, a) = audit().await;
        for i in 0..1205 {
            a.append(ev(i)).await.unwrap();
        }
        let first = verified(&a, Walk::FromCheckpoint).await;
        assert!(first.ok, "{first:?}");
        assert_eq!((first.records, first.walked), (1205, 1205));
        for i in 0..7 {
            a.append(ev(i)).await.unwrap();
        }
        let next = verified(&a, Walk::FromCheckpoint).await;
        assert!(next.ok, "{next:?}");
        assert_eq!((next.records, next.walked), (1212, 8));
        let again = verified(&a, Walk::FromCheckpoint).await;
        assert_eq!((again.ok, again.walked), (true, 1));

        // Scrubbing behind the checkpoint goes round in slices, and finds an old edit.
        let upto = again.checkpoint.clone().unwrap();
        assert_eq!(a.scrub("acme", 0, &upto, 500).await.unwrap(), (500, None));
        assert_eq!(
            a.scrub("acme", 500, &upto, 500).await.unwrap(),
            (1000, None)
        );
        assert_eq!(a.scrub("acme", 1000, &upto, 500).await.unwrap(), (0, None));
        let k = Key::new("acme", record_path(700)).unwrap();
        let original = s.get(&k).await.unwrap().unwrap().value;
        tamper(&s, 700, |r| r.event.status = 500).await;
        assert_eq!(a.scrub("acme", 0, &upto, 500).await.unwrap(), (500, None));
        assert_eq!(
            a.scrub("acme", 500, &upto, 500).await.unwrap().1.as_deref(),
            Some("record 700 was altered")
        );
        s.delete(k.clone(), Expect::Any).await.unwrap();
        assert!(
            a.scrub("acme", 500, &upto, 500)
                .await
                .unwrap()
                .1
                .unwrap()
                .contains("record 700 is missing")
        );
        s.put(k, original, Expect::Any).await.unwrap();
        assert_eq!(
            a.scrub("acme", 500, &upto, 500).await.unwrap(),
            (1000, None)
        );

        // An edit past the checkpoint is found by the next walk from it.
        a.append(ev(99)).await.unwrap();
        tamper(&s, 1213, |r| r.event.actor = "mallory".into()).await;
        let v = verified(&a, Walk::FromCheckpoint).await;
        assert_eq!(v.problem.as_deref(), Some("record 1213 was altered"));

        // An edit behind the checkpoint needs the full walk; the checkpoint's own record is
        // read every time, so changing it is found either way.
        tamper(&s, 10, |r| r.event.actor = "mallory".into()).await;
        let full = verified(&a, Walk::Full).await;
        assert_eq!(full.problem.as_deref(), Some("record 10 was altered"));
        let k = Key::new("acme", record_path(1212)).unwrap();
        s.delete(k, Expect::Any).await.unwrap();
        let v = verified(&a, Walk::FromCheckpoint).await;
        assert!(
            v.problem
                .unwrap()
                .contains("record 1212 was verified before and is gone")
        );
    }

    /// Export, edit detection and pruning: records go only once exported and older than the
    /// cutoff, the chain that remains verifies from its base (fully and from a checkpoint), and
    /// the prune is fenced.
    #[tokio::test]
    async fn exported_records_are_pruned_and_what_remains_verifies_from_the_base() {
        let (_d, s, a) = audit().await;
        for i in 0..30 {
            a.append(ev(i)).await.unwrap();
        }
        assert!(verified(&a, Walk::Full).await.ok);
        let epoch = s
            .acquire_lease("n1", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();

        // Nothing exported yet: nothing may go, however old.
        assert_eq!(a.prune("acme", u64::MAX, epoch, 100).await.unwrap(), 0);

        // Records 1..=20 were made before 1020.
        let f = a.export("acme", None, 1020, 5000).await.unwrap();
        assert_eq!(
            (
                f.header.first_seq,
                f.header.last_seq,
                f.records.len(),
                f.more
            ),
            (1, 20, 20, false)
        );
        assert_eq!(f.header.prev_hash, GENESIS);
        let bytes = serde_json::to_vec(&f).unwrap();
        let c = a.check_export(&bytes).unwrap();
        assert!(c.ok, "{c:?}");
        assert_eq!(
            (c.records, c.first_seq, c.last_seq),
            (20, Some(1), Some(20))
        );

        // Any edit of the file fails its check.
        let mut edited = f.clone();
        edited.records[3].event.actor = "mallory".into();
        assert_eq!(
            checked(&a, &edited).problem.as_deref(),
            Some("record 4 was altered")
        );
        let mut cut = f.clone();
        cut.records.remove(5);
        assert!(
            checked(&a, &cut)
                .problem
                .unwrap()
                .contains("record 6 is missing")
        );
        let mut short = f.clone();
        short.records.pop();
        assert!(!checked(&a, &short).ok);
        let mut header = f.clone();
        header.header.last_seq = 19;
        assert!(
            checked(&a, &header)
                .problem
                .unwrap()
                .contains("header was altered")
        );
        let other = Audit::start(s.clone(), [9; 32]);
        assert!(!other.check_export(&bytes).unwrap().ok);
        assert!(a.check_export(b"{not json").is_err());

        // The next export continues after the first.
        let g = a.export("acme", None, 1025, 6000).await.unwrap();
        assert_eq!((g.header.first_seq, g.header.last_seq), (21, 25));
        assert_eq!(g.header.prev_hash, f.header.last_hash);
        assert!(checked(&a, &g).ok);

        // Pruning with a cutoff of 1012: records 1..=12, in batches of 5.
        let tracked = verified(&a, Walk::FromCheckpoint).await;
        assert!(tracked.ok);
        let mut pruned = 0;
        loop {
            let n = a.prune("acme", 1012, epoch, 5).await.unwrap();
            if n == 0 {
                break;
            }
            assert!(n <= 5);
            pruned += n;
        }
        assert_eq!(pruned, 12);
        assert!(!has_record(&s, 12).await);
        assert!(has_record(&s, 13).await);
        let full = verified(&a, Walk::Full).await;
        assert!(full.ok, "{full:?}");
        assert_eq!((full.records, full.walked), (30, 18));
        // Records past the export mark stay, however old.
        while a.prune("acme", u64::MAX, epoch, 100).await.unwrap() > 0 {}
        assert!(!has_record(&s, 25).await);
        assert!(has_record(&s, 26).await);
        let v = verified(&a, Walk::FromCheckpoint).await;
        assert!(v.ok, "{v:?}");
        a.append(ev(50)).await.unwrap();
        assert!(verified(&a, Walk::Full).await.ok);

        // A backup carries the base and the export mark: restored into another store, the
        // pruned chain verifies from its base and pruning goes on from where it was.
        let bk = a.backup_key();
        let bytes = crate::backup::create(s.as_ref(), 8000, &bk).await.unwrap();
        let (_d2, s2) = crate::testing::temp_redb().await;
        let b = crate::backup::decode(&bytes, &bk).unwrap();
        let mark = a.next_restore_mark(&b, 8001).await.unwrap();
        crate::backup::restore(s2.as_ref(), b, false, vec![mark])
            .await
            .unwrap();
        let restored = Audit::start(s2.clone(), KEY);
        let v = restored.verify("acme", None).await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!((v.records, v.walked), (31, 6));
        assert!(
            s2.get(&Key::new("acme", crate::keys::AUDIT_BASE).unwrap())
                .await
                .unwrap()
                .is_some()
        );

        // A stale epoch cannot prune.
        s.release_lease("n1").await.unwrap();
        let e2 = s
            .acquire_lease("n2", Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert!(e2 > epoch);
        a.export("acme", None, u64::MAX, 7000).await.unwrap();
        assert!(matches!(
            a.prune("acme", u64::MAX, epoch, 100).await,
            Err(AuditError::Store(StoreError::Fenced { .. }))
        ));

        // A forged or removed base is found.
        let bk = Key::new("acme", crate::keys::AUDIT_BASE).unwrap();
        let good_base = s.get(&bk).await.unwrap().unwrap().value;
        let mut forged: Anchor = serde_json::from_slice(&good_base).unwrap();
        forged.seq += 1;
        put_json(&s, bk.clone(), &forged).await;
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("audit_base was altered"));
        assert!(matches!(
            a.prune("acme", u64::MAX, e2, 100).await,
            Err(AuditError::Broken { .. })
        ));
        s.delete(bk.clone(), Expect::Any).await.unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("record 1 is missing"));
        s.put(bk, good_base, Expect::Any).await.unwrap();
        assert!(a.verify("acme", None).await.unwrap().ok);
    }
}
