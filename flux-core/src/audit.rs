//! The audit log: every mutating API call, appended to a per-tenant hash chain.
//!
//! Record `n` of a tenant is stored at `audit/<n>` and carries the MAC of record `n-1`; its own
//! MAC (HMAC-SHA-256 with a key derived from the token signing key, which the store never
//! holds) covers every other field. The tenant's `audit_head` names the last record and its MAC.
//! [`Audit::verify`] walks the chain: an edited record no longer matches its MAC (and without
//! the key nobody can compute a new one), a deleted one leaves a gap or a broken link, and a
//! truncated tail disagrees with the head. Cutting the newest records *and* the head back
//! together is caught against a [`Checkpoint`] from an earlier verification.
//!
//! Appends are batched: records offered at the same time are written in one transaction per
//! tenant (one fsync), and each caller is answered only once its record is durable.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::model::Millis;
use crate::store::{DynStore, Expect, Key, StoreError, Txn};

/// Hash of the record before the first.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = crate::keys::AUDIT_HEAD;
const PREFIX: &str = crate::keys::AUDIT;

fn record_path(seq: u64) -> String {
    crate::keys::audit_record(seq)
}

/// What happened, as the caller offers it.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
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
        let body = serde_json::to_vec(&(self.seq, &self.event, &self.prev_hash))
            .expect("records serialise");
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("any key length");
        mac.update(&body);
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A point of a chain known good: the record `seq` had MAC `hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    pub hash: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// Result of walking a tenant's chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub tenant: String,
    pub records: u64,
    pub ok: bool,
    /// The last record verified, to compare the next verification with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// The first problem found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the audit writer has stopped")]
    Stopped,
    #[error("audit append kept conflicting; retry")]
    Busy,
}

type Pending = (Event, oneshot::Sender<Result<u64, String>>);

/// The audit log of a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Audit {
    store: DynStore,
    key: [u8; 32],
    tx: mpsc::Sender<Pending>,
}

impl Audit {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(store: DynStore, key: [u8; 32]) -> Audit {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(writer(store.clone(), key, rx));
        Audit { store, key, tx }
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

    /// Records of a tenant with `seq > after`, oldest first, at most `limit`.
    pub async fn records(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<Record>, AuditError> {
        let mut out = Vec::new();
        for e in self.store.list(tenant, PREFIX).await? {
            // An unreadable record is shown by `verify`; the readable ones stay listable.
            let Ok(r) = serde_json::from_slice::<Record>(&e.value) else {
                tracing::warn!(key = %e.key, "unreadable audit record skipped");
                continue;
            };
            if r.seq > after {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Walks a tenant's chain and reports the first break. With `since` (the checkpoint of an
    /// earlier verification), also fails if that record is gone or changed, which is how a
    /// chain cut back together with its head is found.
    pub async fn verify(
        &self,
        tenant: &str,
        since: Option<&Checkpoint>,
    ) -> Result<Verification, AuditError> {
        // `audit/` and `audit_head` in one consistent listing: an append between two reads
        // would look like a mismatch.
        let all = self.store.list(tenant, "audit").await?;
        let head: Option<Head> = all
            .iter()
            .find(|e| e.key.path() == HEAD)
            .and_then(|e| serde_json::from_slice(&e.value).ok());
        let entries: Vec<_> = all
            .iter()
            .filter(|e| e.key.path().starts_with(PREFIX))
            .collect();
        let mut prev = GENESIS.to_string();
        let mut n = 0u64;
        let fail = |records: u64, problem: String| Verification {
            tenant: tenant.to_string(),
            records,
            ok: false,
            checkpoint: None,
            problem: Some(problem),
        };
        for e in entries {
            let expected_seq = n + 1;
            let r: Record = match serde_json::from_slice(&e.value) {
                Ok(r) => r,
                Err(err) => return Ok(fail(n, format!("{} is unreadable: {err}", e.key.path()))),
            };
            if e.key.path() != record_path(r.seq) {
                return Ok(fail(n, format!("{} holds record {}", e.key.path(), r.seq)));
            }
            if r.seq != expected_seq {
                return Ok(fail(
                    n,
                    format!("record {expected_seq} is missing (next is {})", r.seq),
                ));
            }
            if r.prev_hash != prev {
                return Ok(fail(
                    n,
                    format!("record {} does not link to record {}", r.seq, n),
                ));
            }
            if r.compute_hash(&self.key) != r.hash {
                return Ok(fail(n, format!("record {} was altered", r.seq)));
            }
            if let Some(c) = since
                && c.seq == r.seq
                && c.hash != r.hash
            {
                return Ok(fail(
                    n,
                    format!("record {} differs from when it was last verified", r.seq),
                ));
            }
            prev = r.hash.clone();
            n = r.seq;
        }
        match head {
            None if n == 0 => {}
            None => return Ok(fail(n, "the chain head is missing".into())),
            Some(h) if h.seq != n || h.hash != prev => {
                return Ok(fail(
                    n,
                    format!(
                        "the head names record {} but the chain ends at record {n}",
                        h.seq
                    ),
                ));
            }
            Some(_) => {}
        }
        if let Some(c) = since
            && c.seq > n
        {
            return Ok(fail(
                n,
                format!(
                    "the chain ends at record {n} but record {} was verified before: records were cut off",
                    c.seq
                ),
            ));
        }
        Ok(Verification {
            tenant: tenant.to_string(),
            records: n,
            ok: true,
            checkpoint: (n > 0).then(|| Checkpoint {
                seq: n,
                hash: prev.clone(),
            }),
            problem: None,
        })
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
        let new_head = Head { seq, hash: prev };
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

    async fn audit() -> (tempfile::TempDir, DynStore, Audit) {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(&format!("redb:{}", dir.path().join("a.redb").display()))
            .await
            .unwrap();
        let a = Audit::start(store.clone(), KEY);
        (dir, store, a)
    }

    const KEY: [u8; 32] = [7; 32];

    fn ev(i: u64) -> Event {
        Event {
            at: 1000 + i,
            actor: "alice".into(),
            tenant: "acme".into(),
            action: "POST /v1/jobs".into(),
            object: format!("/v1/jobs/{i}"),
            status: 202,
            version: Some(i),
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
        for i in 0..5 {
            a.append(ev(i)).await.unwrap();
        }
        let k3 = Key::new("acme", record_path(3)).unwrap();
        let original = s.get(&k3).await.unwrap().unwrap().value;

        let mut r: Record = serde_json::from_slice(&original).unwrap();
        r.event.actor = "mallory".into();
        s.put(k3.clone(), serde_json::to_vec(&r).unwrap(), Expect::Any)
            .await
            .unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert_eq!(
            (v.ok, v.problem.as_deref()),
            (false, Some("record 3 was altered"))
        );

        // Re-hashing the edited record (even with the right key) does not help: the next
        // link breaks; without the key not even the record itself verifies.
        r.hash = r.compute_hash(&[0; 32]);
        s.put(k3.clone(), serde_json::to_vec(&r).unwrap(), Expect::Any)
            .await
            .unwrap();
        let v = a.verify("acme", None).await.unwrap();
        assert!(v.problem.unwrap().contains("record 3 was altered"));
        r.hash = r.compute_hash(&KEY);
        s.put(k3.clone(), serde_json::to_vec(&r).unwrap(), Expect::Any)
            .await
            .unwrap();
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
        // Cut back consistently (record 5 gone and the head moved to record 4): only the
        // checkpoint of the earlier verification shows it.
        let r4: Record = serde_json::from_slice(
            &s.get(&Key::new("acme", record_path(4)).unwrap())
                .await
                .unwrap()
                .unwrap()
                .value,
        )
        .unwrap();
        let head = Head {
            seq: 4,
            hash: r4.hash,
        };
        s.put(
            Key::new("acme", HEAD).unwrap(),
            serde_json::to_vec(&head).unwrap(),
            Expect::Any,
        )
        .await
        .unwrap();
        assert!(a.verify("acme", None).await.unwrap().ok);
        let v = a.verify("acme", Some(&checkpoint)).await.unwrap();
        assert!(v.problem.unwrap().contains("cut off"), "{checkpoint:?}");
    }
}
