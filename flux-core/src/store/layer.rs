//! Store decorators without the forwarding: a [`Layer`] names the store below it and overrides
//! only the operations it changes; every other one goes to the inner store unchanged, and
//! [`Layer::observe`] hears the name and duration of each. Every type that implements `Layer`
//! is a [`Store`] (by the blanket implementation here), so a decorator written this way picks up
//! a new store operation without an edit.
//!
//! Guarantees:
//! - an operation a layer does not override reaches the inner store with its arguments
//!   unchanged, and its result comes back unchanged;
//! - `commit_many`, `put` and `delete` go through the layer's own [`Layer::commit`] unless the
//!   layer overrides them, so a layer that intercepts commits sees every write (the inner
//!   store still gathers the concurrent commits into one durable step).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::{
    Change, Entry, Epoch, Expect, Key, Range, Result, Snapshot, Store, Txn, Version, Versioned,
};

/// A store that wraps another. Override what the layer changes; the rest forwards.
#[async_trait]
pub trait Layer: Send + Sync + fmt::Debug + 'static {
    /// The store below.
    fn inner(&self) -> &dyn Store;

    /// Hears each forwarded operation's name (`get`, `commit`, `list`, `list_range`,
    /// `tenants`, `epoch`, `snapshot`, `restore`, `lease`) and how long the inner store took.
    /// Overridden operations are not observed unless the override calls this itself.
    fn observe(&self, _op: &'static str, _took: Duration) {}

    fn backend(&self) -> &'static str {
        self.inner().backend()
    }
    fn unwritable(&self) -> Option<String> {
        self.inner().unwritable()
    }
    fn commit_batches(&self) -> Option<(u64, u64)> {
        self.inner().commit_batches()
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.inner().subscribe()
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        observed(self, "get", self.inner().get(key)).await
    }
    async fn commit(&self, txn: Txn) -> Result<Version> {
        observed(self, "commit", self.inner().commit(txn)).await
    }
    async fn commit_many(&self, txns: Vec<Txn>) -> Vec<Result<Version>> {
        futures::future::join_all(txns.into_iter().map(|t| Layer::commit(self, t))).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        observed(self, "list", self.inner().list(tenant, prefix)).await
    }
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        observed(self, "list_range", self.inner().list_range(tenant, range)).await
    }
    async fn tenants(&self) -> Result<Vec<String>> {
        observed(self, "tenants", self.inner().tenants()).await
    }
    async fn next_epoch(&self) -> Result<Epoch> {
        observed(self, "epoch", self.inner().next_epoch()).await
    }
    async fn current_epoch(&self) -> Result<Epoch> {
        observed(self, "epoch", self.inner().current_epoch()).await
    }
    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        observed(self, "epoch", self.inner().raise_epoch(floor)).await
    }
    async fn snapshot(&self) -> Result<Snapshot> {
        observed(self, "snapshot", self.inner().snapshot()).await
    }
    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        observed(
            self,
            "restore",
            self.inner().restore(entries, revisions, force, epoch_floor),
        )
        .await
    }
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Epoch>> {
        observed(self, "lease", self.inner().acquire_lease(holder, ttl)).await
    }
    async fn release_lease(&self, holder: &str) -> Result<()> {
        observed(self, "lease", self.inner().release_lease(holder)).await
    }
    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        observed(self, "lease", self.inner().lease_holder()).await
    }
}

/// Awaits `op`, an operation of `layer`'s inner store, and tells [`Layer::observe`] its name
/// and how long it took.
async fn observed<L: Layer + ?Sized, T>(
    layer: &L,
    name: &'static str,
    op: impl std::future::Future<Output = T>,
) -> T {
    let t = Instant::now();
    let r = op.await;
    layer.observe(name, t.elapsed());
    r
}

#[async_trait]
impl<L: Layer> Store for L {
    fn backend(&self) -> &'static str {
        Layer::backend(self)
    }
    fn unwritable(&self) -> Option<String> {
        Layer::unwritable(self)
    }
    fn commit_batches(&self) -> Option<(u64, u64)> {
        Layer::commit_batches(self)
    }
    fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        Layer::subscribe(self)
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        Layer::get(self, key).await
    }
    async fn commit(&self, txn: Txn) -> Result<Version> {
        Layer::commit(self, txn).await
    }
    async fn commit_many(&self, txns: Vec<Txn>) -> Vec<Result<Version>> {
        Layer::commit_many(self, txns).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        Layer::list(self, tenant, prefix).await
    }
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        Layer::list_range(self, tenant, range).await
    }
    async fn tenants(&self) -> Result<Vec<String>> {
        Layer::tenants(self).await
    }
    async fn next_epoch(&self) -> Result<Epoch> {
        Layer::next_epoch(self).await
    }
    async fn current_epoch(&self) -> Result<Epoch> {
        Layer::current_epoch(self).await
    }
    async fn raise_epoch(&self, floor: Epoch) -> Result<Epoch> {
        Layer::raise_epoch(self, floor).await
    }
    async fn snapshot(&self) -> Result<Snapshot> {
        Layer::snapshot(self).await
    }
    async fn restore(
        &self,
        entries: Vec<Entry>,
        revisions: BTreeMap<String, Version>,
        force: bool,
        epoch_floor: Epoch,
    ) -> Result<Epoch> {
        Layer::restore(self, entries, revisions, force, epoch_floor).await
    }
    async fn acquire_lease(&self, holder: &str, ttl: Duration) -> Result<Option<Epoch>> {
        Layer::acquire_lease(self, holder, ttl).await
    }
    async fn release_lease(&self, holder: &str) -> Result<()> {
        Layer::release_lease(self, holder).await
    }
    async fn lease_holder(&self) -> Result<Option<(String, Epoch)>> {
        Layer::lease_holder(self).await
    }
    async fn put(&self, key: Key, value: Vec<u8>, expect: Expect) -> Result<Version> {
        Layer::commit(self, Txn::new().put(key, value, expect)).await
    }
    async fn delete(&self, key: Key, expect: Expect) -> Result<Version> {
        Layer::commit(self, Txn::new().delete(key, expect)).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::store::DynStore;
    use crate::store::redb::RedbStore;

    /// Drops every commit's fence, counts the commits and records the operations it observed.
    #[derive(Debug)]
    struct Strip {
        inner: DynStore,
        commits: AtomicUsize,
        seen: Mutex<Vec<&'static str>>,
    }

    #[async_trait]
    impl Layer for Strip {
        fn inner(&self) -> &dyn Store {
            self.inner.as_ref()
        }
        fn observe(&self, op: &'static str, _took: Duration) {
            self.seen.lock().unwrap().push(op);
        }
        async fn commit(&self, mut txn: Txn) -> Result<Version> {
            self.commits.fetch_add(1, Ordering::SeqCst);
            txn.fence = None;
            self.inner.commit(txn).await
        }
    }

    #[tokio::test]
    async fn a_layer_forwards_what_it_does_not_override_and_its_commit_sees_every_write() {
        let dir = tempfile::tempdir().unwrap();
        let inner: DynStore =
            std::sync::Arc::new(RedbStore::open(dir.path().join("s")).await.unwrap());
        let layer = Strip {
            inner: inner.clone(),
            commits: AtomicUsize::new(0),
            seen: Mutex::new(Vec::new()),
        };
        let store: &dyn Store = &layer;
        let epoch = store.next_epoch().await.unwrap();
        assert_eq!(inner.current_epoch().await.unwrap(), epoch);
        let key = Key::new("acme", "a").unwrap();
        // A stale fence reaches the inner store without it: commit_many goes through the
        // layer's commit.
        let stale = Txn::new()
            .put(key.clone(), b"1".to_vec(), Expect::Absent)
            .fenced(epoch - 1);
        let v = store.commit_many(vec![stale]).await.remove(0).unwrap();
        assert_eq!(store.get(&key).await.unwrap().unwrap().version, v);
        store
            .put(key.clone(), b"2".to_vec(), Expect::Version(v))
            .await
            .unwrap();
        store.delete(key.clone(), Expect::Any).await.unwrap();
        assert!(inner.get(&key).await.unwrap().is_none());
        assert_eq!(layer.commits.load(Ordering::SeqCst), 3);
        assert_eq!(store.backend(), "redb");
        assert_eq!(
            *layer.seen.lock().unwrap(),
            ["epoch", "get"],
            "forwarded operations are observed, overridden ones are not"
        );
    }
}
