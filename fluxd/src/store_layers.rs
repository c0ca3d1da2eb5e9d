//! The small [`Store`] decorators a node stacks over its store (in `node.rs`):
//! - [`Timed`] times every operation into `flux_store_op_duration_seconds{op}`;
//! - [`Fencing`], for chaos runs only, records every fenced commit (and every fenced write
//!   refused) in the node's history log, and in the testing-only `--unsafe-no-fencing` mode
//!   strips the fence from leader writes (still recording the epoch the writer believed it
//!   had). It sits above `Timed`, so a commit is timed as the store sees it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use flux_core::store::{
    Change, DynStore, Entry, Epoch, Expect, Key, Op, Range, Result, Snapshot, Store, StoreError,
    Txn, Version, Versioned,
};
use prometheus::HistogramVec;
use tokio::sync::broadcast;

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

    async fn time<T>(&self, op: &str, f: impl std::future::Future<Output = T>) -> T {
        let start = Instant::now();
        let out = f.await;
        self.hist
            .with_label_values(&[op])
            .observe(start.elapsed().as_secs_f64());
        out
    }
}

#[async_trait]
impl Store for Timed {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn unwritable(&self) -> Option<String> {
        self.inner.unwritable()
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        self.time("get", self.inner.get(key)).await
    }
    async fn commit(&self, txn: Txn) -> Result<Version> {
        self.time("commit", self.inner.commit(txn)).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        self.time("list", self.inner.list(tenant, prefix)).await
    }
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        self.time("list_range", self.inner.list_range(tenant, range))
            .await
    }
    async fn tenants(&self) -> Result<Vec<String>> {
        self.time("tenants", self.inner.tenants()).await
    }
    async fn next_epoch(&self) -> Result<Epoch> {
        self.time("epoch", self.inner.next_epoch()).await
    }
    async fn current_epoch(&self) -> Result<Epoch> {
        self.time("epoch", self.inner.current_epoch()).await
    }
    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        self.time("epoch", self.inner.raise_epoch(floor)).await
    }
    async fn snapshot(&self) -> Result<Snapshot> {
        self.time("snapshot", self.inner.snapshot()).await
    }
    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: std::collections::BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        self.time(
            "restore",
            self.inner.restore(entries, revisions, force, epoch_floor),
        )
        .await
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.subscribe()
    }
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Epoch>> {
        self.time("lease", self.inner.acquire_lease(holder, ttl))
            .await
    }
    async fn release_lease(&self, holder: &str) -> Result<()> {
        self.time("lease", self.inner.release_lease(holder)).await
    }
    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        self.time("lease", self.inner.lease_holder()).await
    }
    async fn put(&self, key: Key, value: Vec<u8>, expect: Expect) -> Result<Version> {
        self.time("commit", self.inner.put(key, value, expect))
            .await
    }
    async fn delete(&self, key: Key, expect: Expect) -> Result<Version> {
        self.time("commit", self.inner.delete(key, expect)).await
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
impl Store for Fencing {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn unwritable(&self) -> Option<String> {
        self.inner.unwritable()
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        self.inner.get(key).await
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
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        self.inner.list(tenant, prefix).await
    }
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        self.inner.list_range(tenant, range).await
    }
    async fn tenants(&self) -> Result<Vec<String>> {
        self.inner.tenants().await
    }
    async fn next_epoch(&self) -> Result<Epoch> {
        self.inner.next_epoch().await
    }
    async fn current_epoch(&self) -> Result<Epoch> {
        self.inner.current_epoch().await
    }
    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        self.inner.raise_epoch(floor).await
    }
    async fn snapshot(&self) -> Result<Snapshot> {
        self.inner.snapshot().await
    }
    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: std::collections::BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        self.inner
            .restore(entries, revisions, force, epoch_floor)
            .await
    }
    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.subscribe()
    }
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Epoch>> {
        self.inner.acquire_lease(holder, ttl).await
    }
    async fn release_lease(&self, holder: &str) -> Result<()> {
        self.inner.release_lease(holder).await
    }
    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        self.inner.lease_holder().await
    }
    async fn put(&self, key: Key, value: Vec<u8>, expect: Expect) -> Result<Version> {
        self.inner.put(key, value, expect).await
    }
    async fn delete(&self, key: Key, expect: Expect) -> Result<Version> {
        self.inner.delete(key, expect).await
    }
}
