//! `flux_events_total{type}`: a [`Layer`] over the node's store that counts the events of
//! every transaction this node commits, once the commit succeeded.
//!
//! Guarantees:
//! - An event is counted by the node that committed it, when its transaction committed (never
//!   for a commit that failed, nor where events are read): the sum over nodes is the number
//!   of events written.
//! - The label takes only the known types ([`flux_core::events::TYPES`]), so the series stay
//!   bounded; anything else is counted as `other`.

use std::sync::Arc;

use async_trait::async_trait;
use flux_core::store::{DynStore, Layer, Op, Result, Store, Txn, Version};
use prometheus::IntCounterVec;

#[derive(Debug)]
pub struct EventCount {
    inner: DynStore,
    counter: IntCounterVec,
}

impl EventCount {
    pub fn wrap(inner: DynStore, counter: IntCounterVec) -> DynStore {
        Arc::new(EventCount { inner, counter })
    }
}

/// The type of an event's stored body, as a label.
fn label(body: &[u8]) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_slice::<Kind>(body)
        .ok()
        .and_then(|k| {
            flux_core::events::TYPES
                .iter()
                .copied()
                .find(|t| *t == k.kind)
        })
        .unwrap_or("other")
}

/// The labels of the events `txn` appends.
fn events_of(txn: &Txn) -> Vec<&'static str> {
    txn.ops
        .iter()
        .filter_map(|o| match o {
            Op::Append { key, value } if key.path() == flux_core::events::EVENTS => {
                Some(label(value))
            }
            _ => None,
        })
        .collect()
}

#[async_trait]
impl Layer for EventCount {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    async fn commit(&self, txn: Txn) -> Result<Version> {
        let kinds = events_of(&txn);
        let r = self.inner.commit(txn).await;
        if r.is_ok() {
            for k in kinds {
                self.counter.with_label_values(&[k]).inc();
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_core::store::{Expect, Key};

    /// Events are counted by type when their transaction commits, and not when it fails.
    #[tokio::test]
    async fn events_count_when_their_transaction_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            flux_core::store::open(&format!("redb:{}", dir.path().join("s.redb").display()))
                .await
                .unwrap();
        let c = IntCounterVec::new(prometheus::Opts::new("t", "t"), &["type"]).unwrap();
        let s = EventCount::wrap(store, c.clone());
        let txn = |expect| {
            let mut t = Txn::new().put(Key::new("t", "x").unwrap(), b"1".to_vec(), expect);
            let e = flux_core::events::Event::new("job.submitted", "j", 1);
            flux_core::events::record(&mut t, "t", &e).unwrap();
            flux_core::events::record(&mut t, "t", &e).unwrap();
            t
        };
        s.commit(txn(Expect::Absent)).await.unwrap();
        assert!(s.commit(txn(Expect::Absent)).await.is_err(), "a conflict");
        assert_eq!(c.with_label_values(&["job.submitted"]).get(), 2);
        assert_eq!(c.with_label_values(&["other"]).get(), 0);
        assert_eq!(label(b"{\"type\":\"nonsense\"}"), "other");
    }
}
