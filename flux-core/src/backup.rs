//! Backups: a consistent, checksummed, versioned snapshot of every tenant's objects that can be
//! verified offline and restored into any backend (redb ↔ Redis).
//!
//! The file is JSON lines:
//!
//! ```text
//! {"format":"fluxforge-backup","format_version":1,"created_at":…,"source_backend":"redb","epoch":7,"revisions":{"acme":12}}
//! {"tenant":"acme","path":"jobs/j-…","version":12,"value":"<base64>"}
//! …
//! {"end":true,"objects":2,"sha256":"<hex of every byte above this line>"}
//! ```
//!
//! A restore moves the fencing epoch above both the epoch recorded in the backup and the
//! target store's own in the same atomic step that replaces the objects, so no leader elected
//! before the restore can write afterwards. Token revocations present in the store are kept
//! (a restore never brings a revoked token back).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Millis;
use crate::store::{Entry, Epoch, Key, SYSTEM_TENANT, Snapshot, Store, StoreError, Version};

/// Largest epoch, version or revision a backup may carry: beyond it, counters would lose
/// precision in Redis scripts or overflow.
pub const MAX_COUNTER: u64 = 1 << 53;

pub const FORMAT: &str = "fluxforge-backup";
pub const FORMAT_VERSION: u32 = 1;

/// Objects a backup leaves out: per-process records that are rewritten every few seconds.
fn ephemeral(e: &Entry) -> bool {
    crate::keys::is_node_record(e.key.tenant(), e.key.path())
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: String },
    #[error("unsupported backup format {0:?} (this build reads {FORMAT} version {FORMAT_VERSION})")]
    Unsupported(String),
    #[error("the backup is truncated: no end line")]
    Truncated,
    #[error("checksum mismatch: the file says {expected}, its content hashes to {found}")]
    Checksum { expected: String, found: String },
    #[error("the end line counts {expected} objects but the file holds {found}")]
    Count { expected: u64, found: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// First line of a backup.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Header {
    pub format: String,
    pub format_version: u32,
    pub created_at: Millis,
    pub source_backend: String,
    /// Fencing epoch of the source store when the snapshot was taken.
    pub epoch: Epoch,
    /// Each tenant's revision counter then, so versions issued before are never issued again.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub revisions: BTreeMap<String, Version>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    tenant: String,
    path: String,
    version: u64,
    value: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: bool,
    objects: u64,
    sha256: String,
}

/// A verified backup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Backup {
    pub header: Header,
    pub entries: Vec<Entry>,
    pub sha256: String,
}

impl Backup {
    pub fn tenants(&self) -> BTreeSet<&str> {
        self.entries.iter().map(|e| e.key.tenant()).collect()
    }
}

/// Encodes a snapshot as a backup file.
pub fn encode(snap: &Snapshot, source_backend: &str, created_at: Millis) -> Vec<u8> {
    let header = Header {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created_at,
        source_backend: source_backend.into(),
        epoch: snap.epoch,
        revisions: snap.revisions.clone(),
    };
    let mut out = serde_json::to_string(&header).expect("header serialises");
    out.push('\n');
    let mut n = 0u64;
    for e in snap.entries.iter().filter(|e| !ephemeral(e)) {
        let line = Line {
            tenant: e.key.tenant().into(),
            path: e.key.path().into(),
            version: e.version,
            value: B64.encode(&e.value),
        };
        out.push_str(&serde_json::to_string(&line).expect("line serialises"));
        out.push('\n');
        n += 1;
    }
    let sha = hex::encode(Sha256::digest(out.as_bytes()));
    let end = End {
        end: true,
        objects: n,
        sha256: sha,
    };
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&end).expect("end serialises")
    );
    out.into_bytes()
}

/// Takes a consistent snapshot of `store` and encodes it.
pub async fn create(store: &dyn Store, created_at: Millis) -> Result<Vec<u8>, BackupError> {
    let snap = store.snapshot().await?;
    Ok(encode(&snap, store.backend(), created_at))
}

/// Parses and checks a backup: format, every line, object count and checksum. Nothing is
/// trusted before this returns `Ok`.
pub fn decode(bytes: &[u8]) -> Result<Backup, BackupError> {
    let malformed = |line: usize, reason: String| BackupError::Malformed { line, reason };
    let text = std::str::from_utf8(bytes).map_err(|e| malformed(0, format!("not UTF-8: {e}")))?;
    let mut hasher = Sha256::new();
    let mut header: Option<Header> = None;
    let mut entries = Vec::new();
    let mut seen = BTreeSet::new();
    let mut offset = 0usize;
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let n = i + 1;
        let line = raw.trim_end_matches('\n');
        offset += raw.len();
        if header.is_none() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| malformed(n, format!("header is not JSON: {e}")))?;
            if v["format"] != FORMAT || v["format_version"] != FORMAT_VERSION {
                return Err(BackupError::Unsupported(format!(
                    "{} version {}",
                    v["format"], v["format_version"]
                )));
            }
            let h: Header = serde_json::from_value(v).map_err(|e| malformed(n, e.to_string()))?;
            if h.epoch > MAX_COUNTER || h.revisions.values().any(|r| *r > MAX_COUNTER) {
                return Err(malformed(n, "epoch or revision out of range".into()));
            }
            for t in h.revisions.keys() {
                crate::store::validate_tenant(t).map_err(|e| malformed(n, e.to_string()))?;
            }
            header = Some(h);
            hasher.update(raw.as_bytes());
            continue;
        }
        if line.starts_with("{\"end\"") {
            let end: End = serde_json::from_str(line).map_err(|e| malformed(n, e.to_string()))?;
            if offset != text.len() {
                return Err(malformed(n + 1, "data after the end line".into()));
            }
            let found = hex::encode(hasher.finalize());
            if found != end.sha256 {
                return Err(BackupError::Checksum {
                    expected: end.sha256,
                    found,
                });
            }
            if end.objects != entries.len() as u64 {
                return Err(BackupError::Count {
                    expected: end.objects,
                    found: entries.len() as u64,
                });
            }
            return Ok(Backup {
                header: header.expect("set above"),
                entries,
                sha256: found,
            });
        }
        hasher.update(raw.as_bytes());
        let l: Line = serde_json::from_str(line).map_err(|e| malformed(n, e.to_string()))?;
        let key = Key::new(&l.tenant, &l.path).map_err(|e| malformed(n, e.to_string()))?;
        if l.version == 0 || l.version > MAX_COUNTER {
            return Err(malformed(n, format!("version of {key} out of range")));
        }
        if !seen.insert((l.tenant.clone(), l.path.clone())) {
            return Err(malformed(n, format!("{key} appears twice")));
        }
        let value = B64
            .decode(&l.value)
            .map_err(|e| malformed(n, format!("value is not base64: {e}")))?;
        entries.push(Entry {
            key,
            version: l.version,
            value,
        });
    }
    Err(BackupError::Truncated)
}

/// What a restore did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreReport {
    pub objects: usize,
    pub tenants: usize,
    /// The fencing epoch in force after the restore.
    pub epoch: Epoch,
    pub backup_epoch: Epoch,
}

/// Restores a verified backup in one atomic step: every object with its version, the revision
/// counters, and the fencing epoch moved above every epoch issued before (the backup's and the
/// store's own). Without `force`, a store that holds objects is refused
/// ([`StoreError::NotEmpty`]) and nothing changes. Revocations in the store are kept.
pub async fn restore(
    store: &dyn Store,
    backup: Backup,
    force: bool,
) -> Result<RestoreReport, BackupError> {
    let tenants = backup.tenants().len();
    let objects = backup.entries.len();
    let mut entries = backup.entries;
    // A token revoked after the backup was taken stays revoked.
    let have: BTreeSet<Key> = entries.iter().map(|e| e.key.clone()).collect();
    for e in store.list(SYSTEM_TENANT, crate::keys::REVOKED).await? {
        if !have.contains(&e.key) {
            entries.push(e);
        }
    }
    let epoch = store
        .restore(entries, backup.header.revisions, force, backup.header.epoch)
        .await?;
    Ok(RestoreReport {
        objects,
        tenants,
        epoch,
        backup_epoch: backup.header.epoch,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        let e = |t: &str, p: &str, v: u64, d: &[u8]| Entry {
            key: Key::new(t, p).unwrap(),
            version: v,
            value: d.to_vec(),
        };
        Snapshot {
            epoch: 9,
            revisions: [("acme".to_string(), 7)].into(),
            entries: vec![
                e("_system", "nodes/n1", 1, b"{}"),
                e("_system", "revoked/acme/j1", 2, b"1"),
                e("acme", "jobs/1", 5, b"{\"a\":1}"),
                e("acme", "bin", 6, &[0, 255, 10, 13]),
            ],
        }
    }

    #[test]
    fn a_backup_round_trips_without_ephemeral_records() {
        let bytes = encode(&snap(), "redb", 42);
        let b = decode(&bytes).unwrap();
        assert_eq!(b.header.epoch, 9);
        assert_eq!(b.header.revisions["acme"], 7);
        assert_eq!(b.header.source_backend, "redb");
        assert_eq!(b.entries, snap().entries[1..].to_vec());
        assert_eq!(b.tenants().len(), 2);
    }

    #[test]
    fn any_edit_truncation_or_garbage_is_caught() {
        let bytes = encode(&snap(), "redb", 42);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let edited = text.replacen("\"version\":5", "\"version\":4", 1);
        assert!(matches!(
            decode(edited.as_bytes()),
            Err(BackupError::Checksum { .. })
        ));
        let lines: Vec<&str> = text.lines().collect();
        let dropped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[3], lines[4]);
        assert!(matches!(
            decode(dropped.as_bytes()),
            Err(BackupError::Checksum { .. })
        ));
        let truncated = &bytes[..bytes.len() - 40];
        assert!(decode(truncated).is_err());
        let no_end = format!("{}\n{}\n", lines[0], lines[1]);
        assert!(matches!(
            decode(no_end.as_bytes()),
            Err(BackupError::Truncated)
        ));
        let trailing = format!("{text}extra\n");
        assert!(matches!(
            decode(trailing.as_bytes()),
            Err(BackupError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"{\"format\":\"other\",\"format_version\":1}\n"),
            Err(BackupError::Unsupported(_))
        ));
        assert!(decode(b"").is_err());
        // Counters beyond what every backend can hold are refused, even with a valid checksum.
        let mut big = snap();
        big.epoch = u64::MAX;
        assert!(matches!(
            decode(&encode(&big, "redb", 1)),
            Err(BackupError::Malformed { .. })
        ));
        let mut big = snap();
        big.entries[2].version = MAX_COUNTER + 1;
        assert!(decode(&encode(&big, "redb", 1)).is_err());
        assert!(decode(&[0xff, 0xfe]).is_err());
    }
}
