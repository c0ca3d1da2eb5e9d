//! The small [`Store`] decorators a node stacks over its store (in `node.rs`), each a
//! [`Layer`] that overrides only what it changes:
//! - [`Timed`] times every operation into `flux_store_op_duration_seconds{op}`;
//! - [`Fencing`], for chaos runs only, records every fenced commit (and every fenced write
//!   refused) in the node's history log, and in the testing-only `--unsafe-no-fencing` mode
//!   strips the fence from leader writes (still recording the epoch the writer believed it
//!   had). It sits above `Timed`, so a commit is timed as the store sees it.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use flux_core::store::{DynStore, Layer, Op, Result, Store, StoreError, Txn, Version};
use prometheus::HistogramVec;

use crate::history::History;

/// Times every operation of the store below.
#[derive(Debug)]
pub struct Timed {
    inner: DynStore,
    hist: HistogramVec,
}

impl Timed {
    pub fn wrap(inner: DynStore, hist: HistogramVec) -> DynStore {
        Arc::new(Timed { inner, hist })
    }
}

#[async_trait]
impl Layer for Timed {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    fn observe(&self, op: &'static str, took: Duration) {
        self.hist
            .with_label_values(&[op])
            .observe(took.as_secs_f64());
    }
}

/// The history log of fenced commits, and the testing-only unfenced mode (chaos runs).
#[derive(Debug)]
pub struct Fencing {
    inner: DynStore,
    history: Option<Arc<History>>,
    unfenced: bool,
}

impl Fencing {
    /// `inner` itself when there is nothing to record or strip.
    pub fn wrap(inner: DynStore, history: Option<Arc<History>>, unfenced: bool) -> DynStore {
        if history.is_none() && !unfenced {
            return inner;
        }
        Arc::new(Fencing {
            inner,
            history,
            unfenced,
        })
    }
}

#[async_trait]
impl Layer for Fencing {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    async fn commit(&self, mut txn: Txn) -> Result<Version> {
        let fence = txn.fence;
        // Only fenced transactions that write are leader writes with a revision of their own
        // (a transaction of checks alone answers the tenant's current revision).
        let writes = txn.ops.iter().any(|o| !matches!(o, Op::Check { .. }));
        let tenant = match (&self.history, fence) {
            (Some(_), Some(_)) if writes => txn.tenant().ok().map(str::to_string),
            _ => None,
        };
        if self.unfenced {
            txn.fence = None;
        }
        let result = self.inner.commit(txn).await;
        if let (Some(h), Some(epoch), Some(tenant)) = (&self.history, fence, tenant) {
            match &result {
                Ok(revision) => h.write(epoch, &tenant, *revision),
                Err(StoreError::Fenced { .. }) => h.fenced(epoch, &tenant),
                Err(_) => {}
            }
        }
        result
    }
}
