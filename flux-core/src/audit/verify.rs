//! Walking a tenant's chain: from its base (or genesis), or from a checkpoint of an earlier
//! verification, up to the head read before the walk, in pages of range reads.
//!
//! The head is read first. Records at or below it never change (appends only add records
//! past it, and a prune only removes records at or below the base), so the walk meets a
//! consistent chain whatever is appended meanwhile; a prune or restore in between is
//! retried by [`Audit::verify_walk`].

use super::{
    Audit, AuditError, Checkpoint, GENESIS, HEAD, Head, PREFIX, Record, Verification, record_path,
};
use crate::store::{Key, Range};

/// Records read per range read of a walk.
const PAGE: usize = 1000;

/// Where a verification starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// At the chain's base (genesis, or the last record pruned after an export): every record
    /// still in the store is read.
    Full,
    /// At the checkpoint of an earlier verification when it is usable (same restore
    /// generation, past the base): only its record and the newer ones are read.
    FromCheckpoint,
}

impl Audit {
    pub(super) async fn verify_once(
        &self,
        tenant: &str,
        since: Option<&Checkpoint>,
        generation: Result<u64, String>,
        walk: Walk,
    ) -> Result<Verification, AuditError> {
        let mut walked = 0u64;
        let generation = match generation {
            Ok(g) => g,
            Err(problem) => return Ok(failed(tenant, 0, 0, problem)),
        };
        let (since, note) = match since_in_generation(since, generation) {
            Ok(s) => s,
            Err(problem) => return Ok(failed(tenant, 0, 0, problem)),
        };
        let head: Option<Result<Head, String>> =
            self.store.get(&Key::new(tenant, HEAD)?).await?.map(|v| {
                serde_json::from_slice(&v.value)
                    .map_err(|err| format!("the chain head is unreadable: {err}"))
            });
        let head_seq = match &head {
            Some(Ok(h)) => Some(h.seq),
            _ => None,
        };
        let (mut n, mut prev) = match self.walk_start(tenant, since, head_seq).await? {
            Ok(start) => start,
            Err(failure) => return Ok(failure),
        };
        // Whether the newest record read was written before heads were signed.
        let mut last_legacy = false;
        if let Some(c) = since.filter(|c| walk == Walk::FromCheckpoint && c.seq > n) {
            (prev, last_legacy) = match self.checkpoint_record(tenant, c, n, &mut walked).await? {
                Ok(record) => record,
                Err(failure) => return Ok(failure),
            };
            n = c.seq;
        }
        let links = match self
            .walk_links(tenant, (n, prev), head_seq, since, &mut walked)
            .await?
        {
            Ok(l) => l,
            Err((at, problem)) => return Ok(failed(tenant, at, walked, problem)),
        };
        let (n, prev) = (links.seq, links.hash);
        if links.read_any {
            last_legacy = links.legacy;
        }
        if let Err(problem) = self.check_end(tenant, head, since, (n, &prev), last_legacy) {
            return Ok(failed(tenant, n, walked, problem));
        }
        Ok(Verification {
            tenant: tenant.to_string(),
            records: n,
            ok: true,
            checkpoint: (n > 0).then(|| Checkpoint {
                seq: n,
                hash: prev.clone(),
                generation,
            }),
            problem: None,
            note,
            walked,
        })
    }

    /// Where the walk starts (the base), once `since` is checked against it and the head's seq.
    async fn walk_start(
        &self,
        tenant: &str,
        since: Option<&Checkpoint>,
        head_seq: Option<u64>,
    ) -> Result<Result<(u64, String), Verification>, AuditError> {
        if let (Some(c), Some(end)) = (since, head_seq)
            && c.seq > end
        {
            return Ok(Err(failed(
                tenant,
                end,
                0,
                format!(
                    "the chain ends at record {end} but record {} was verified before: records were cut off",
                    c.seq
                ),
            )));
        }
        let (n, prev) = match self.base(tenant).await? {
            None => (0, GENESIS.to_string()),
            Some((Ok(b), _)) => (b.seq, b.hash),
            Some((Err(problem), _)) => return Ok(Err(failed(tenant, 0, 0, problem))),
        };
        if let Some(c) = since
            && c.seq == n
            && c.hash != prev
        {
            return Ok(Err(failed(
                tenant,
                n,
                0,
                format!("record {n} differs from when it was last verified"),
            )));
        }
        Ok(Ok((n, prev)))
    }

    /// Reads and checks checkpoint `c`'s record: its MAC and whether it predates signed heads.
    async fn checkpoint_record(
        &self,
        tenant: &str,
        c: &Checkpoint,
        n: u64,
        walked: &mut u64,
    ) -> Result<Result<(String, bool), Verification>, AuditError> {
        let k = Key::new(tenant, record_path(c.seq))?;
        let Some(v) = self.store.get(&k).await? else {
            return Ok(Err(failed(
                tenant,
                n,
                0,
                format!(
                    "record {} was verified before and is gone: records were removed",
                    c.seq
                ),
            )));
        };
        *walked += 1;
        let r = match serde_json::from_slice::<Record>(&v.value) {
            Ok(r) => r,
            Err(err) => {
                return Ok(Err(failed(
                    tenant,
                    n,
                    *walked,
                    format!("{k} is unreadable: {err}"),
                )));
            }
        };
        if r.seq != c.seq || r.compute_hash(&self.key) != r.hash || r.hash != c.hash {
            return Ok(Err(failed(
                tenant,
                n,
                *walked,
                format!("record {} differs from when it was last verified", c.seq),
            )));
        }
        Ok(Ok((r.hash, r.event.jti.is_none())))
    }

    /// Checks the chain's last record against the head read before the walk and against `since`.
    fn check_end(
        &self,
        tenant: &str,
        head: Option<Result<Head, String>>,
        since: Option<&Checkpoint>,
        (n, prev): (u64, &str),
        last_legacy: bool,
    ) -> Result<(), String> {
        match head {
            None if n == 0 => {}
            None => return Err("the chain head is missing".into()),
            Some(Err(problem)) => return Err(problem),
            Some(Ok(h)) if h.seq != n || h.hash != prev => {
                return Err(format!(
                    "the head names record {} but the chain ends at record {n}",
                    h.seq
                ));
            }
            Some(Ok(h)) => match h.mac_ok(&self.key, tenant) {
                Some(true) => {}
                Some(false) => return Err("the chain head was altered".into()),
                // Heads of earlier versions carry no MAC; the next append signs one. Only a
                // chain whose newest record is from before then may end in one.
                None if last_legacy => {}
                None => return Err("the chain head carries no MAC".into()),
            },
        }
        if let Some(c) = since
            && c.seq > n
        {
            return Err(format!(
                "the chain ends at record {n} but record {} was verified before: records were cut off",
                c.seq
            ));
        }
        Ok(())
    }

    /// Reads the records after `from` (a record's seq and MAC) up to `end` (all of them
    /// without one), checking each one's place, link and MAC, and `since`'s record if met.
    /// `Err` holds the last good record and the first problem.
    async fn walk_links(
        &self,
        tenant: &str,
        from: (u64, String),
        end: Option<u64>,
        since: Option<&Checkpoint>,
        walked: &mut u64,
    ) -> Result<Result<Links, (u64, String)>, AuditError> {
        let (mut n, mut prev) = from;
        let mut legacy = false;
        let mut read_any = false;
        'walk: loop {
            if end.is_some_and(|end| n >= end) {
                break;
            }
            let range = Range::first(PREFIX, PAGE).after(record_path(n));
            let page = self.store.list_range(tenant, &range).await?;
            let full_page = page.len() == PAGE;
            for e in page {
                *walked += 1;
                let expected_seq = n + 1;
                let r: Record = match serde_json::from_slice(&e.value) {
                    Ok(r) => r,
                    Err(err) => {
                        return Ok(Err((n, format!("{} is unreadable: {err}", e.key.path()))));
                    }
                };
                if e.key.path() != record_path(r.seq) {
                    return Ok(Err((n, format!("{} holds record {}", e.key.path(), r.seq))));
                }
                if end.is_some_and(|end| r.seq > end) {
                    // Appended after the head was read (or records are missing up to the
                    // end, which the caller's head check reports).
                    break 'walk;
                }
                if r.seq != expected_seq {
                    return Ok(Err((
                        n,
                        format!("record {expected_seq} is missing (next is {})", r.seq),
                    )));
                }
                if r.prev_hash != prev {
                    return Ok(Err((
                        n,
                        format!("record {} does not link to record {}", r.seq, n),
                    )));
                }
                if r.compute_hash(&self.key) != r.hash {
                    return Ok(Err((n, format!("record {} was altered", r.seq))));
                }
                if let Some(c) = since
                    && c.seq == r.seq
                    && c.hash != r.hash
                {
                    return Ok(Err((
                        n,
                        format!("record {} differs from when it was last verified", r.seq),
                    )));
                }
                legacy = r.event.jti.is_none();
                read_any = true;
                prev = r.hash;
                n = r.seq;
            }
            if !full_page {
                break;
            }
        }
        Ok(Ok(Links {
            seq: n,
            hash: prev,
            legacy,
            read_any,
        }))
    }

    /// The MAC of record `seq` as stored, checked; `Err` says why it cannot be trusted
    /// (missing, unreadable, another record at its path, or altered).
    pub(super) async fn verified_hash(
        &self,
        tenant: &str,
        seq: u64,
    ) -> Result<Result<String, String>, AuditError> {
        let Some(v) = self.store.get(&Key::new(tenant, record_path(seq))?).await? else {
            return Ok(Err(format!("record {seq} is missing")));
        };
        Ok(match serde_json::from_slice::<Record>(&v.value) {
            Ok(r) if r.seq == seq && r.compute_hash(&self.key) == r.hash => Ok(r.hash),
            Ok(_) => Err(format!("record {seq} was altered")),
            Err(e) => Err(format!("record {seq} is unreadable: {e}")),
        })
    }

    /// Re-verifies a slice of the records behind a checkpoint: at most `max` records after
    /// `from`, up to the checkpoint `upto` (whose record a verification from it reads every
    /// time). A verification from a checkpoint trusts what was verified before; scrubbing
    /// the chain behind it in slices, round after round, finds an edit of an old record
    /// within `records / max` rounds at a bounded cost per round. Returns where the next
    /// slice starts (the base again once `upto` is reached) and the first problem found.
    pub async fn scrub(
        &self,
        tenant: &str,
        from: u64,
        upto: &Checkpoint,
        max: u64,
    ) -> Result<(u64, Option<String>), AuditError> {
        let (base_seq, base_hash) = match self.base(tenant).await? {
            None => (0, super::GENESIS.to_string()),
            Some((Ok(b), _)) => (b.seq, b.hash),
            Some((Err(problem), _)) => return Ok((0, Some(problem))),
        };
        let from = from.max(base_seq);
        if from >= upto.seq {
            return Ok((base_seq, None));
        }
        let prev = if from == base_seq {
            base_hash
        } else {
            match self.verified_hash(tenant, from).await? {
                Ok(hash) => hash,
                Err(problem) => return Ok((base_seq, Some(problem))),
            }
        };
        let end = (from + max.max(1)).min(upto.seq);
        let mut walked = 0;
        let links = match self
            .walk_links(tenant, (from, prev), Some(end), Some(upto), &mut walked)
            .await?
        {
            Ok(l) => l,
            Err((_, problem)) => return Ok((base_seq, Some(problem))),
        };
        if links.seq < end {
            return Ok((
                base_seq,
                Some(format!("record {} is missing", links.seq + 1)),
            ));
        }
        if end == upto.seq && links.hash != upto.hash {
            return Ok((
                base_seq,
                Some(format!(
                    "record {end} differs from when it was last verified"
                )),
            ));
        }
        Ok((if end == upto.seq { base_seq } else { end }, None))
    }
}

/// A verification of `tenant` that failed on `problem` at record `records`.
fn failed(tenant: &str, records: u64, walked: u64, problem: String) -> Verification {
    Verification {
        tenant: tenant.to_string(),
        records,
        ok: false,
        checkpoint: None,
        problem: Some(problem),
        note: None,
        walked,
    }
}

/// The checkpoint usable in restore `generation`, and a note when a restore made it unusable.
fn since_in_generation(
    since: Option<&Checkpoint>,
    generation: u64,
) -> Result<(Option<&Checkpoint>, Option<String>), String> {
    let mut note = None;
    let since = match since {
        Some(c) if c.generation < generation => {
            note = Some(format!(
                "restored from a backup (restore {generation}) since record {} was verified",
                c.seq
            ));
            None
        }
        Some(c) if c.generation > generation => {
            return Err(format!(
                "the store's restore mark is at restore {generation} but restore {} was seen before: the store was rolled back",
                c.generation
            ));
        }
        other => other,
    };
    Ok((since, note))
}

/// Where a walk ended: the last record read and its MAC, and whether that record predates
/// signed heads.
struct Links {
    seq: u64,
    hash: String,
    legacy: bool,
    read_any: bool,
}
