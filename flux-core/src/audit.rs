//! The audit log: every mutating API call, appended to a per-tenant hash chain.
//!
//! Record `n` of a tenant is stored at `audit/<n>` and carries the hash of record `n-1`; its own
//! hash covers every other field. The tenant's `audit_head` names the last record and its hash.
//! [`Audit::verify`] walks the chain: an edited record no longer matches its hash, a deleted one
//! leaves a gap in the sequence or a broken link, and a truncated tail disagrees with the head.
//!
//! Appends are batched: records offered at the same time are written in one transaction per
//! tenant (one fsync), and each caller is answered only once its record is durable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::model::Millis;
use crate::store::{DynStore, Expect, Key, StoreError, Txn};

/// Hash of the record before the first.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const HEAD: &str = "audit_head";
const PREFIX: &str = "audit/";

fn record_path(seq: u64) -> String {
    format!("{PREFIX}{seq:016}")
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
    /// The hash this record must carry: SHA-256 over its sequence number, event and link.
    pub fn compute_hash(&self) -> String {
        let body = serde_json::to_vec(&(self.seq, &self.event, &self.prev_hash))
            .expect("records serialise");
        hex::encode(Sha256::digest(body))
    }
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
    tx: mpsc::Sender<Pending>,
}

impl Audit {
    /// Starts the writer task (on the current tokio runtime).
    pub fn start(store: DynStore) -> Audit {
        let (tx, rx) = mpsc::channel::<Pending>(4096);
        tokio::spawn(writer(store.clone(), rx));
        Audit { store, tx }
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
            let r: Record = serde_json::from_slice(&e.value)
                .map_err(|err| StoreError::Corrupt(format!("{}: {err}", e.key)))?;
            if r.seq > after {
                out.push(r);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Walks a tenant's chain and reports the first break.
    pub async fn verify(&self, tenant: &str) -> Result<Verification, AuditError> {
        let entries = self.store.list(tenant, PREFIX).await?;
        let head: Option<Head> = self
            .store
            .get(&Key::new(tenant, HEAD)?)
            .await?
            .and_then(|v| serde_json::from_slice(&v.value).ok());
        let mut prev = GENESIS.to_string();
        let mut n = 0u64;
        let fail = |records: u64, problem: String| Verification {
            tenant: tenant.to_string(),
            records,
            ok: false,
            problem: Some(problem),
        };
        for e in &entries {
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
            if r.compute_hash() != r.hash {
                return Ok(fail(n, format!("record {} was altered", r.seq)));
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
        Ok(Verification {
            tenant: tenant.to_string(),
            records: n,
            ok: true,
            problem: None,
        })
    }
}

/// Appends batches: everything queued is written per tenant in one CAS transaction on the head.
async fn writer(store: DynStore, mut rx: mpsc::Receiver<Pending>) {
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
            let result = append_batch(&store, &tenant, &events).await;
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
            r.hash = r.compute_hash();
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
            Err(StoreError::Conflict { .. }) => continue,
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
        let a = Audit::start(store.clone());
        (dir, store, a)
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
        let v = a.verify("acme").await.unwrap();
        assert!(v.ok, "{v:?}");
        assert_eq!(v.records, 50);
        assert_eq!(a.records("acme", 45, 100).await.unwrap().len(), 5);
        assert!(a.verify("other").await.unwrap().ok);
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
        let v = a.verify("acme").await.unwrap();
        assert_eq!(
            (v.ok, v.problem.as_deref()),
            (false, Some("record 3 was altered"))
        );

        // Re-hashing the edited record does not help: the next link breaks.
        r.hash = r.compute_hash();
        s.put(k3.clone(), serde_json::to_vec(&r).unwrap(), Expect::Any)
            .await
            .unwrap();
        let v = a.verify("acme").await.unwrap();
        assert!(v.problem.unwrap().contains("record 4 does not link"));

        s.delete(k3.clone(), Expect::Any).await.unwrap();
        let v = a.verify("acme").await.unwrap();
        assert!(v.problem.unwrap().contains("record 3 is missing"));

        s.put(k3, original, Expect::Any).await.unwrap();
        assert!(a.verify("acme").await.unwrap().ok);
        s.delete(Key::new("acme", record_path(5)).unwrap(), Expect::Any)
            .await
            .unwrap();
        let v = a.verify("acme").await.unwrap();
        assert!(v.problem.unwrap().contains("head names record 5"));
    }
}
