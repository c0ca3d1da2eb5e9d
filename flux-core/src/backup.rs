//! Backups: a consistent, authenticated, versioned snapshot of every tenant's objects that can
//! be verified and restored into any backend (redb ↔ Redis).
//!
//! The file is JSON lines:
//!
//! ```text
//! {"format":"fluxforge-backup","format_version":2,"created_at":…,"source_backend":"redb","epoch":7,"revisions":{"acme":12},"key_id":"…"}
//! {"tenant":"acme","path":"jobs/j-…","version":12,"value":"<base64>"}
//! …
//! {"end":true,"objects":2,"sha256":"<hex of every byte above this line>","mac":"<hex>"}
//! ```
//!
//! The SHA-256 only catches accidents: anyone who can write the file can recompute it. What
//! makes a backup trustworthy is the MAC, HMAC-SHA-256 over every byte above the end line under
//! the cluster's backup key ([`BackupKey`], derived from the token signing key, which the store
//! never holds). Without that key nobody can make a backup this cluster accepts: an object
//! added, removed or changed in the file (a job for another tenant, say) is refused by
//! [`decode`] before anything is written. `key_id` names the key that signed the file, so a
//! backup of another cluster is told apart from a tampered one; it restores only when that
//! cluster's key is given explicitly. Format version 1 (checksum only) is refused.
//!
//! A restore moves the fencing epoch above both the epoch recorded in the backup and the
//! target store's own in the same atomic step that replaces the objects, so no leader elected
//! before the restore can write afterwards. Token revocations present in the store are kept by
//! that same step (a restore never brings a revoked token back, not even one revoked while the
//! restore was under way).

use std::collections::BTreeSet;
use std::fmt::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::Millis;
use crate::store::{Entry, Epoch, Key, Snapshot, Store, StoreError, Version};

/// Largest epoch, version or revision a backup may carry: beyond it, counters would lose
/// precision in Redis scripts or overflow.
pub const MAX_COUNTER: u64 = 1 << 53;

pub const FORMAT: &str = "fluxforge-backup";
pub const FORMAT_VERSION: u32 = 2;
/// The checksum-only format of earlier builds: read to say what it is, never restored.
pub const UNAUTHENTICATED_FORMAT_VERSION: u32 = 1;

/// What the backup key is derived for, from the audit key (itself derived from the signing key).
const KEY_PURPOSE: &[u8] = b"fluxforge backup mac v2";
const KEY_ID_PURPOSE: &[u8] = b"fluxforge backup key id";

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("any key length");
    for p in parts {
        mac.update(p);
    }
    mac
}

/// The key that signs and checks a cluster's backups. It authenticates backups only: giving it
/// to another cluster (to restore this one's backup there) does not let anyone issue tokens.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupKey([u8; 32]);

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey({})", self.id())
    }
}

impl BackupKey {
    /// The backup key of the cluster whose audit key is `audit_key`.
    pub fn from_audit_key(audit_key: &[u8; 32]) -> BackupKey {
        BackupKey(
            hmac(audit_key, &[KEY_PURPOSE])
                .finalize()
                .into_bytes()
                .into(),
        )
    }

    /// The backup key of the cluster whose token signing key is `key`.
    pub fn from_signing_key(
        key: &crate::auth::SigningKey,
    ) -> Result<BackupKey, crate::auth::AuthError> {
        Ok(BackupKey::from_audit_key(
            &key.derive(crate::audit::KEY_PURPOSE)?,
        ))
    }

    /// The key as 64 hex digits (how a client hands another cluster's key to a server).
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Result<BackupKey, BackupError> {
        let bytes = hex::decode(s.trim()).map_err(|_| BackupError::BadKey)?;
        Ok(BackupKey(
            bytes.try_into().map_err(|_| BackupError::BadKey)?,
        ))
    }

    /// A public name of the key (16 hex digits), written into each backup it signs.
    pub fn id(&self) -> String {
        hex::encode(&hmac(&self.0, &[KEY_ID_PURPOSE]).finalize().into_bytes()[..8])
    }

    fn mac(&self, signed: &[u8]) -> HmacSha256 {
        hmac(&self.0, &[signed])
    }
}

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
    #[error(
        "this is a format version 1 backup: it carries only a checksum, which anyone who can edit the file can recompute, so it is not restored; take a new backup with this version"
    )]
    Unauthenticated,
    #[error("the backup is truncated: no end line")]
    Truncated,
    #[error("checksum mismatch: the file says {expected}, its content hashes to {found}")]
    Checksum { expected: String, found: String },
    #[error("the end line counts {expected} objects but the file holds {found}")]
    Count { expected: u64, found: u64 },
    #[error(
        "the backup was signed by another cluster's key (key id {file_key}; this cluster's is {this_key}): it is restored only with that cluster's key, given explicitly (fluxctl backup restore --backup-key)"
    )]
    ForeignKey { file_key: String, this_key: String },
    #[error(
        "the backup's MAC does not verify under key {key_id}: the file was altered after it was taken"
    )]
    Mac { key_id: String },
    #[error("a backup key is 64 hex digits")]
    BadKey,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// First line of a backup.
#[serde_with::skip_serializing_none]
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
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub revisions: std::collections::BTreeMap<String, Version>,
    /// [`BackupKey::id`] of the key that signed the file (format 2).
    pub key_id: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    tenant: String,
    path: String,
    version: u64,
    value: String,
}

#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: bool,
    objects: u64,
    sha256: String,
    mac: Option<String>,
}

/// A parsed backup. From [`decode`] it is authenticated; from [`inspect`] only well formed.
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

    /// The header and size, as `fluxctl backup` and the server's verify show them.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::json!({
            "format_version": self.header.format_version,
            "created_at": self.header.created_at,
            "source_backend": self.header.source_backend,
            "epoch": self.header.epoch,
            "key_id": self.header.key_id,
            "objects": self.entries.len(),
            "tenants": self.tenants(),
            "sha256": self.sha256,
        })
    }
}

/// Encodes a snapshot as a backup file signed with `key`.
pub fn encode(
    snap: &Snapshot,
    source_backend: &str,
    created_at: Millis,
    key: &BackupKey,
) -> Vec<u8> {
    let header = Header {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        created_at,
        source_backend: source_backend.into(),
        epoch: snap.epoch,
        revisions: snap.revisions.clone(),
        key_id: Some(key.id()),
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
    let mac = hex::encode(key.mac(out.as_bytes()).finalize().into_bytes());
    let end = End {
        end: true,
        objects: n,
        sha256: sha,
        mac: Some(mac),
    };
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string(&end).expect("end serialises")
    );
    out.into_bytes()
}

/// Takes a consistent snapshot of `store` and encodes it, signed with `key`.
pub async fn create(
    store: &dyn Store,
    created_at: Millis,
    key: &BackupKey,
) -> Result<Vec<u8>, BackupError> {
    let snap = store.snapshot().await?;
    Ok(encode(&snap, store.backend(), created_at, key))
}

/// Parses and checks a backup and authenticates it under `key`: format, every line, object
/// count, checksum, the key that signed it and the MAC. Nothing is trusted before this returns
/// `Ok`. A format version 1 file ([`BackupError::Unauthenticated`]), one signed by another key
/// ([`BackupError::ForeignKey`]) and one whose MAC does not verify ([`BackupError::Mac`]) are
/// refused.
pub fn decode(bytes: &[u8], key: &BackupKey) -> Result<Backup, BackupError> {
    let (backup, mac, signed_len) = parse(bytes)?;
    if backup.header.format_version == UNAUTHENTICATED_FORMAT_VERSION {
        return Err(BackupError::Unauthenticated);
    }
    let file_key = backup.header.key_id.clone().unwrap_or_default();
    if file_key != key.id() {
        return Err(BackupError::ForeignKey {
            file_key,
            this_key: key.id(),
        });
    }
    let mac = mac.and_then(|m| hex::decode(m).ok()).unwrap_or_default();
    key.mac(&bytes[..signed_len])
        .verify_slice(&mac)
        .map_err(|_| BackupError::Mac { key_id: key.id() })?;
    Ok(backup)
}

/// Parses and checks a backup without authenticating it (format, lines, count, checksum): for
/// showing what a file holds. A backup from `inspect` is not to be restored.
pub fn inspect(bytes: &[u8]) -> Result<Backup, BackupError> {
    parse(bytes).map(|(b, _, _)| b)
}

/// The backup, the MAC of its end line and how many leading bytes the MAC covers.
fn parse(bytes: &[u8]) -> Result<(Backup, Option<String>, usize), BackupError> {
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
        let start = offset;
        offset += raw.len();
        if header.is_none() {
            let v: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| malformed(n, format!("header is not JSON: {e}")))?;
            let known = v["format_version"] == FORMAT_VERSION
                || v["format_version"] == UNAUTHENTICATED_FORMAT_VERSION;
            if v["format"] != FORMAT || !known {
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
            if h.format_version == FORMAT_VERSION && h.key_id.is_none() {
                return Err(malformed(n, "the header names no key_id".into()));
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
            let header = header.expect("set above");
            if header.format_version == FORMAT_VERSION && end.mac.is_none() {
                return Err(malformed(n, "the end line carries no mac".into()));
            }
            return Ok((
                Backup {
                    header,
                    entries,
                    sha256: found,
                },
                end.mac,
                start,
            ));
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

/// Restores an authenticated backup in one atomic step: every object with its version, the
/// revision counters, and the fencing epoch moved above every epoch issued before (the
/// backup's and the store's own). `extra` objects are written in the same step, in place of
/// any the backup holds under the same key (the audit log's restore mark). Without `force`, a
/// store that holds objects is refused ([`StoreError::NotEmpty`]) and nothing changes.
/// Revocations in the store are kept by the store's own restore step ([`Store::restore`]), so
/// none made while this runs is lost.
pub async fn restore(
    store: &dyn Store,
    backup: Backup,
    force: bool,
    extra: Vec<Entry>,
) -> Result<RestoreReport, BackupError> {
    let tenants = backup.tenants().len();
    let objects = backup.entries.len();
    let replaced: BTreeSet<Key> = extra.iter().map(|e| e.key.clone()).collect();
    let mut entries: Vec<Entry> = backup
        .entries
        .into_iter()
        .filter(|e| !replaced.contains(&e.key))
        .collect();
    entries.extend(extra);
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

    fn key() -> BackupKey {
        BackupKey::from_audit_key(&[7; 32])
    }

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

    /// What an attacker who can write the file but has no key does: edit the body, then
    /// recompute the checksum (and the count) of the end line.
    fn reseal(text: &str) -> String {
        let body_end = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
        let body = &text[..body_end];
        let mut end: serde_json::Value = serde_json::from_str(text[body_end..].trim_end()).unwrap();
        end["sha256"] = hex::encode(Sha256::digest(body.as_bytes())).into();
        end["objects"] = (body.lines().count() as u64 - 1).into();
        format!("{body}{end}\n")
    }

    #[test]
    fn a_backup_round_trips_without_ephemeral_records() {
        let bytes = encode(&snap(), "redb", 42, &key());
        let b = decode(&bytes, &key()).unwrap();
        assert_eq!(b.header.epoch, 9);
        assert_eq!(b.header.revisions["acme"], 7);
        assert_eq!(b.header.source_backend, "redb");
        assert_eq!(b.header.key_id, Some(key().id()));
        assert_eq!(b.entries, snap().entries[1..].to_vec());
        assert_eq!(b.tenants().len(), 2);
        assert_eq!(inspect(&bytes).unwrap(), b);
    }

    #[test]
    fn an_edit_with_a_recomputed_checksum_fails_the_mac() {
        let text = String::from_utf8(encode(&snap(), "redb", 42, &key())).unwrap();
        // An object added for another tenant, the checksum recomputed: well formed, so
        // `inspect` takes it, but not authentic.
        let injected = format!(
            "{{\"tenant\":\"globex\",\"path\":\"jobs/j-beef\",\"version\":3,\"value\":\"{}\"}}\n",
            B64.encode(b"{}")
        );
        let split = text.trim_end_matches('\n').rfind('\n').unwrap() + 1;
        let forged = reseal(&format!("{}{injected}{}", &text[..split], &text[split..]));
        assert!(
            inspect(forged.as_bytes()).is_ok(),
            "the checksum was redone"
        );
        assert!(matches!(
            decode(forged.as_bytes(), &key()),
            Err(BackupError::Mac { .. })
        ));
        // Edits of the header (its key id included) are covered too.
        let relabeled = reseal(&text.replacen("\"epoch\":9", "\"epoch\":1", 1));
        assert!(matches!(
            decode(relabeled.as_bytes(), &key()),
            Err(BackupError::Mac { .. })
        ));
        let other = BackupKey::from_audit_key(&[8; 32]);
        let claimed = reseal(&text.replacen(&key().id(), &other.id(), 1));
        assert!(matches!(
            decode(claimed.as_bytes(), &other),
            Err(BackupError::Mac { .. })
        ));
        // A MAC stripped or replaced is no better.
        let no_mac = text.replace(",\"mac\":", ",\"xmac\":");
        assert!(decode(no_mac.as_bytes(), &key()).is_err());
    }

    #[test]
    fn another_clusters_backup_needs_that_clusters_key() {
        let theirs = BackupKey::from_audit_key(&[9; 32]);
        let bytes = encode(&snap(), "redis", 42, &theirs);
        match decode(&bytes, &key()) {
            Err(BackupError::ForeignKey { file_key, this_key }) => {
                assert_eq!((file_key, this_key), (theirs.id(), key().id()));
            }
            other => panic!("{other:?}"),
        }
        assert!(decode(&bytes, &theirs).is_ok());
        let given = BackupKey::from_hex(&theirs.to_hex()).unwrap();
        assert!(decode(&bytes, &given).is_ok());
        assert!(matches!(
            BackupKey::from_hex("abcd"),
            Err(BackupError::BadKey)
        ));
        assert_ne!(theirs.id(), key().id());
    }

    #[test]
    fn a_checksum_only_backup_is_refused_with_a_clear_error() {
        // Format version 1 as earlier builds wrote it: no key id, no MAC.
        let header = r#"{"format":"fluxforge-backup","format_version":1,"created_at":1,"source_backend":"redb","epoch":3}"#;
        let body = format!("{header}\n");
        let v1 = format!(
            "{body}{{\"end\":true,\"objects\":0,\"sha256\":\"{}\"}}\n",
            hex::encode(Sha256::digest(body.as_bytes()))
        );
        assert!(inspect(v1.as_bytes()).is_ok());
        let e = decode(v1.as_bytes(), &key()).unwrap_err();
        assert!(matches!(e, BackupError::Unauthenticated), "{e:?}");
        assert!(e.to_string().contains("version 1"), "{e}");
    }

    #[test]
    fn any_edit_truncation_or_garbage_is_caught() {
        let k = key();
        let bytes = encode(&snap(), "redb", 42, &k);
        let text = String::from_utf8(bytes.clone()).unwrap();
        let edited = text.replacen("\"version\":5", "\"version\":4", 1);
        assert!(matches!(
            decode(edited.as_bytes(), &k),
            Err(BackupError::Checksum { .. })
        ));
        let lines: Vec<&str> = text.lines().collect();
        let dropped = format!("{}\n{}\n{}\n{}\n", lines[0], lines[1], lines[3], lines[4]);
        assert!(matches!(
            decode(dropped.as_bytes(), &k),
            Err(BackupError::Checksum { .. })
        ));
        let truncated = &bytes[..bytes.len() - 40];
        assert!(decode(truncated, &k).is_err());
        let no_end = format!("{}\n{}\n", lines[0], lines[1]);
        assert!(matches!(
            decode(no_end.as_bytes(), &k),
            Err(BackupError::Truncated)
        ));
        let trailing = format!("{text}extra\n");
        assert!(matches!(
            decode(trailing.as_bytes(), &k),
            Err(BackupError::Malformed { .. })
        ));
        assert!(matches!(
            decode(b"{\"format\":\"other\",\"format_version\":1}\n", &k),
            Err(BackupError::Unsupported(_))
        ));
        assert!(decode(b"", &k).is_err());
        // Counters beyond what every backend can hold are refused, even when signed.
        let mut big = snap();
        big.epoch = u64::MAX;
        assert!(matches!(
            decode(&encode(&big, "redb", 1, &k), &k),
            Err(BackupError::Malformed { .. })
        ));
        let mut big = snap();
        big.entries[2].version = MAX_COUNTER + 1;
        assert!(decode(&encode(&big, "redb", 1, &k), &k).is_err());
        assert!(decode(&[0xff, 0xfe], &k).is_err());
    }
}
