//! Keeping a chain bounded: export its oldest records to a signed file, then prune them.
//!
//! - [`Audit::export`] writes the records after the last export (or from `after`) that were
//!   made before a date into an [`ExportFile`]: the records as stored (each with its MAC and
//!   link) and a header naming the record before the first (`prev_hash`) and the last one,
//!   MAC'd with the audit key. That header is the export's signed checkpoint. The export also
//!   moves the tenant's *export mark* (`audit_exported`, MAC'd) to its last record.
//! - [`Audit::check_export`] verifies a file: its header's MAC, every record's MAC, their links
//!   and their sequence. Editing, adding, removing or reordering a record, or changing the
//!   header, fails it.
//! - [`Audit::prune`], run by the leader with `--audit-retention`, deletes records that were
//!   exported and are older than the retention, oldest first, in fenced batches. Each batch
//!   moves the tenant's *base* (`audit_base`, MAC'd: the last record removed and its MAC) in
//!   the same transaction, and verification starts from the base ([`super::Walk`]). Nothing
//!   that was not exported is ever pruned ([`prune_to`]).

use serde::{Deserialize, Serialize};

use super::{Audit, AuditError, GENESIS, PREFIX, Record, mac_of, record_path};
use crate::keys;
use crate::model::Millis;
use crate::store::{Epoch, Expect, Key, Range, StoreError, Txn};

/// The most records one export holds; an export that stops there says `more`.
pub const MAX_EXPORT: usize = 50_000;
/// What an export file says it is.
pub const EXPORT_FORMAT: &str = "fluxforge-audit-export/1";

const BASE_PURPOSE: &str = "audit base";
const EXPORTED_PURPOSE: &str = "audit exported";
const EXPORT_PURPOSE: &str = "audit export";

/// A signed point of a tenant's chain: record `seq`, written at `at`, had MAC `hash`. What it
/// means depends on where it is kept (the base, the export mark); its MAC covers that too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Anchor {
    pub seq: u64,
    pub hash: String,
    pub at: Millis,
    pub mac: String,
}

impl Anchor {
    fn new(
        key: &[u8; 32],
        purpose: &str,
        tenant: &str,
        seq: u64,
        hash: String,
        at: Millis,
    ) -> Anchor {
        let mac = mac_of(key, &(purpose, tenant, seq, &hash, at));
        Anchor { seq, hash, at, mac }
    }

    fn valid(&self, key: &[u8; 32], purpose: &str, tenant: &str) -> bool {
        self.mac == mac_of(key, &(purpose, tenant, self.seq, &self.hash, self.at))
    }
}

/// The signed part of an export: which records it holds and what they link to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    pub format: String,
    pub tenant: String,
    /// The first record held (`last_seq + 1 == first_seq` when it holds none).
    pub first_seq: u64,
    /// The MAC of record `first_seq - 1` (genesis for the first record of a chain).
    pub prev_hash: String,
    pub last_seq: u64,
    pub last_hash: String,
    /// Records made at or after this were left out.
    pub before: Millis,
    pub exported_at: Millis,
}

/// An export file: the header, its MAC and the records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportFile {
    pub header: ExportHeader,
    pub mac: String,
    /// Records before `before` remain that this export could not hold ([`MAX_EXPORT`]).
    #[serde(default)]
    pub more: bool,
    pub records: Vec<Record>,
}

/// What [`Audit::check_export`] found.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportCheck {
    pub ok: bool,
    pub tenant: Option<String>,
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub problem: Option<String>,
}

/// How far a chain whose base is `base_seq` may be pruned: the newest record `s` such that
/// every record from `base_seq + 1` to `s` is among `records` (seq and time, oldest first,
/// read after the base), was exported (`seq <= exported_seq`) and was made before `cutoff`.
/// `None` when not even the first may go. Pure: unit tested below.
pub fn prune_to(
    base_seq: u64,
    exported_seq: u64,
    records: &[(u64, Millis)],
    cutoff: Millis,
) -> Option<u64> {
    let mut last = None;
    for (expected, &(seq, at)) in (base_seq + 1..).zip(records) {
        if seq != expected || seq > exported_seq || at >= cutoff {
            break;
        }
        last = Some(seq);
    }
    last
}

type Read = Option<(Result<Anchor, String>, u64)>;

impl Audit {
    async fn anchor(&self, tenant: &str, path: &str, purpose: &str) -> Result<Read, AuditError> {
        let k = Key::new(tenant, path)?;
        Ok(self.store.get(&k).await?.map(|v| {
            let a = serde_json::from_slice::<Anchor>(&v.value)
                .ok()
                .filter(|a| a.valid(&self.key, purpose, tenant))
                .ok_or_else(|| format!("the chain's {path} was altered"));
            (a, v.version)
        }))
    }

    /// The tenant's base (the last record pruned), with its version; an `Err` inside when it
    /// does not verify.
    pub(super) async fn base(&self, tenant: &str) -> Result<Read, AuditError> {
        self.anchor(tenant, keys::AUDIT_BASE, BASE_PURPOSE).await
    }

    async fn exported(&self, tenant: &str) -> Result<Read, AuditError> {
        self.anchor(tenant, keys::AUDIT_EXPORTED, EXPORTED_PURPOSE)
            .await
    }

    /// A verified anchor, or the chain's start when there is none.
    fn trusted(tenant: &str, read: Read) -> Result<(u64, String, Option<u64>), AuditError> {
        match read {
            None => Ok((0, GENESIS.to_string(), None)),
            Some((Ok(a), version)) => Ok((a.seq, a.hash, Some(version))),
            Some((Err(problem), _)) => Err(AuditError::Broken {
                tenant: tenant.to_string(),
                problem,
            }),
        }
    }

    /// Exports the tenant's records made before `before`, starting after `after` (default:
    /// after the last export; never before the base), at most [`MAX_EXPORT`]; verifies them as
    /// it reads them, and moves the export mark to the last one.
    pub async fn export(
        &self,
        tenant: &str,
        after: Option<u64>,
        before: Millis,
        now: Millis,
    ) -> Result<ExportFile, AuditError> {
        let broken = |problem: String| AuditError::Broken {
            tenant: tenant.to_string(),
            problem,
        };
        let (base_seq, base_hash, _) = Self::trusted(tenant, self.base(tenant).await?)?;
        let exported = self.exported(tenant).await?;
        let exported_seq = match &exported {
            Some((Ok(a), _)) => a.seq,
            Some((Err(p), _)) => return Err(broken(p.clone())),
            None => 0,
        };
        let start = after.unwrap_or(exported_seq).max(base_seq);
        let prev_hash = if start == base_seq {
            base_hash
        } else {
            self.verified_hash(tenant, start).await?.map_err(broken)?
        };
        let mut records: Vec<Record> = Vec::new();
        let mut more = false;
        let (mut n, mut prev) = (start, prev_hash.clone());
        'read: loop {
            let page = self
                .store
                .list_range(tenant, &Range::first(PREFIX, 1000).after(record_path(n)))
                .await?;
            let last_page = page.len() < 1000;
            for e in page {
                let r: Record = serde_json::from_slice(&e.value)
                    .map_err(|err| broken(format!("{} is unreadable: {err}", e.key.path())))?;
                if r.event.at >= before {
                    break 'read;
                }
                if records.len() == MAX_EXPORT {
                    more = true;
                    break 'read;
                }
                if r.seq != n + 1 {
                    return Err(broken(format!("record {} is missing", n + 1)));
                }
                if r.prev_hash != prev || r.compute_hash(&self.key) != r.hash {
                    return Err(broken(format!("record {} does not verify", r.seq)));
                }
                n = r.seq;
                prev = r.hash.clone();
                records.push(r);
            }
            if last_page {
                break;
            }
        }
        let header = ExportHeader {
            format: EXPORT_FORMAT.to_string(),
            tenant: tenant.to_string(),
            first_seq: start + 1,
            prev_hash,
            last_seq: n,
            last_hash: prev.clone(),
            before,
            exported_at: now,
        };
        if n > exported_seq {
            let at = records.last().map_or(0, |r| r.event.at);
            let mark = Anchor::new(&self.key, EXPORTED_PURPOSE, tenant, n, prev, at);
            let expect = exported.map_or(Expect::Absent, |(_, v)| Expect::Version(v));
            let txn = Txn::new().put(
                Key::new(tenant, keys::AUDIT_EXPORTED)?,
                serde_json::to_vec(&mark).expect("anchors serialise"),
                expect,
            );
            match self.store.commit(txn).await {
                Ok(_) => {}
                // Another export moved the mark meanwhile: this one still holds good records,
                // and the mark only ever moves forward through a fresh read.
                Err(StoreError::Conflict { .. }) => return Err(AuditError::Busy),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(ExportFile {
            mac: mac_of(&self.key, &(EXPORT_PURPOSE, &header)),
            header,
            more,
            records,
        })
    }

    /// Verifies an export file made by this cluster (its audit key); `Err` when `bytes` are
    /// not an export file at all.
    pub fn check_export(&self, bytes: &[u8]) -> Result<ExportCheck, String> {
        let mut check = ExportCheck {
            ok: false,
            tenant: None,
            records: 0,
            first_seq: None,
            last_seq: None,
            problem: None,
        };
        let f: ExportFile =
            serde_json::from_slice(bytes).map_err(|e| format!("not an audit export: {e}"))?;
        let h = &f.header;
        check.tenant = Some(h.tenant.clone());
        check.first_seq = Some(h.first_seq);
        check.last_seq = Some(h.last_seq);
        let problem = if h.format != EXPORT_FORMAT {
            Some(format!("unknown format {:?}", h.format))
        } else if f.mac != mac_of(&self.key, &(EXPORT_PURPOSE, h)) {
            Some("the header was altered, or the file was made by another cluster".to_string())
        } else {
            Self::check_records(&self.key, &f)
        };
        check.records = f.records.len() as u64;
        check.ok = problem.is_none();
        check.problem = problem;
        Ok(check)
    }

    fn check_records(key: &[u8; 32], f: &ExportFile) -> Option<String> {
        let h = &f.header;
        let (mut n, mut prev) = (h.first_seq.checked_sub(1)?, h.prev_hash.as_str());
        for r in &f.records {
            if r.seq != n + 1 {
                return Some(format!("record {} is missing (next is {})", n + 1, r.seq));
            }
            if r.event.tenant != h.tenant {
                return Some(format!("record {} is of tenant {}", r.seq, r.event.tenant));
            }
            if r.prev_hash != prev {
                return Some(format!("record {} does not link to record {n}", r.seq));
            }
            if r.compute_hash(key) != r.hash {
                return Some(format!("record {} was altered", r.seq));
            }
            n = r.seq;
            prev = &r.hash;
        }
        if n != h.last_seq || prev != h.last_hash {
            return Some(format!(
                "the header names record {} but the records end at {n}",
                h.last_seq
            ));
        }
        None
    }

    /// One pruning batch of at most `batch` records: deletes the oldest records that were
    /// exported and made before `cutoff`, and moves the base past them, in one transaction
    /// fenced by `epoch`. Returns how many went (0 when none may, or when the chain moved
    /// meanwhile: the next pass reads it again).
    pub async fn prune(
        &self,
        tenant: &str,
        cutoff: Millis,
        epoch: Epoch,
        batch: usize,
    ) -> Result<u64, AuditError> {
        let (base_seq, base_hash, base_version) = Self::trusted(tenant, self.base(tenant).await?)?;
        let exported = self.exported(tenant).await?;
        let (exported_seq, _, exported_version) = Self::trusted(tenant, exported)?;
        let Some(exported_version) = exported_version else {
            return Ok(0);
        };
        let page = self
            .store
            .list_range(
                tenant,
                &Range::first(PREFIX, batch.max(1)).after(record_path(base_seq)),
            )
            .await?;
        let mut read = Vec::with_capacity(page.len());
        for e in page {
            let r: Record = serde_json::from_slice(&e.value).map_err(|err| AuditError::Broken {
                tenant: tenant.to_string(),
                problem: format!("{} is unreadable: {err}", e.key.path()),
            })?;
            read.push((r, e.version));
        }
        let times: Vec<(u64, Millis)> = read.iter().map(|(r, _)| (r.seq, r.event.at)).collect();
        let Some(to) = prune_to(base_seq, exported_seq, &times, cutoff) else {
            return Ok(0);
        };
        // What goes must verify: the new base is trusted by every later verification.
        let mut prev = base_hash.as_str();
        let mut txn = Txn::new().fenced(epoch);
        let mut last = None;
        for (r, version) in read.iter().take_while(|(r, _)| r.seq <= to) {
            if r.prev_hash != prev || r.compute_hash(&self.key) != r.hash {
                return Err(AuditError::Broken {
                    tenant: tenant.to_string(),
                    problem: format!("record {} does not verify", r.seq),
                });
            }
            prev = &r.hash;
            txn = txn.delete(
                Key::new(tenant, record_path(r.seq))?,
                Expect::Version(*version),
            );
            last = Some(r);
        }
        let last = last.expect("prune_to names a record read");
        let base = Anchor::new(
            &self.key,
            BASE_PURPOSE,
            tenant,
            last.seq,
            last.hash.clone(),
            last.event.at,
        );
        txn = txn
            .put(
                Key::new(tenant, keys::AUDIT_BASE)?,
                serde_json::to_vec(&base).expect("anchors serialise"),
                base_version.map_or(Expect::Absent, Expect::Version),
            )
            .check(
                Key::new(tenant, keys::AUDIT_EXPORTED)?,
                Expect::Version(exported_version),
            );
        match self.store.commit(txn).await {
            Ok(_) => Ok(to - base_seq),
            Err(StoreError::Conflict { .. }) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_to_stops_at_the_first_record_not_exported_or_too_new() {
        let recs = [(4, 100), (5, 110), (6, 120), (7, 130)];
        // Everything exported, all old enough.
        assert_eq!(prune_to(3, 10, &recs, 1000), Some(7));
        // The export mark bounds it.
        assert_eq!(prune_to(3, 5, &recs, 1000), Some(5));
        // The retention bounds it (made at or after the cutoff stays).
        assert_eq!(prune_to(3, 10, &recs, 120), Some(5));
        // Nothing exported past the base, or nothing old enough.
        assert_eq!(prune_to(3, 3, &recs, 1000), None);
        assert_eq!(prune_to(3, 10, &recs, 100), None);
        // A gap after the base (a record missing) stops it before the gap.
        assert_eq!(prune_to(3, 10, &[(4, 1), (6, 2)], 1000), Some(4));
        assert_eq!(prune_to(3, 10, &[(5, 1)], 1000), None);
        // A record older than one before it still waits for the first too new.
        assert_eq!(prune_to(0, 10, &[(1, 5), (2, 50), (3, 6)], 40), Some(1));
        assert_eq!(prune_to(0, 10, &[], 40), None);
    }
}
