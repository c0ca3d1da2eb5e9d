//! A store wrapper for tests that need a concurrent write to land at the worst moment: just
//! before a transaction reaches the real store.

use std::time::Duration;

/// What [`BeforeCommit`] runs: given the transaction about to be committed, a future to await
/// first (or nothing).
pub type CommitHook = Box<
    dyn Fn(&crate::store::Txn) -> Option<futures::future::BoxFuture<'static, ()>> + Send + Sync,
>;

/// A store that runs a hook just before each commit reaches the real store: tests use it to
/// land a concurrent write (a heartbeat, an operator's delete) at the worst moment.
pub struct BeforeCommit {
    inner: crate::store::DynStore,
    hook: CommitHook,
}

impl std::fmt::Debug for BeforeCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BeforeCommit")
            .field("inner", &self.inner)
            .finish()
    }
}

impl BeforeCommit {
    pub fn wrap(inner: crate::store::DynStore, hook: CommitHook) -> crate::store::DynStore {
        std::sync::Arc::new(BeforeCommit { inner, hook })
    }
}

#[async_trait::async_trait]
impl crate::store::Store for BeforeCommit {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn unwritable(&self) -> Option<String> {
        self.inner.unwritable()
    }
    async fn get(
        &self,
        key: &crate::store::Key,
    ) -> crate::store::Result<Option<crate::store::Versioned>> {
        self.inner.get(key).await
    }
    async fn commit(&self, txn: crate::store::Txn) -> crate::store::Result<crate::store::Version> {
        if let Some(f) = (self.hook)(&txn) {
            f.await;
        }
        self.inner.commit(txn).await
    }
    async fn list(
        &self,
        tenant: &str,
        prefix: &str,
    ) -> crate::store::Result<Vec<crate::store::Entry>> {
        self.inner.list(tenant, prefix).await
    }
    async fn list_range(
        &self,
        tenant: &str,
        range: &crate::store::Range,
    ) -> crate::store::Result<Vec<crate::store::Entry>> {
        self.inner.list_range(tenant, range).await
    }
    async fn tenants(&self) -> crate::store::Result<Vec<String>> {
        self.inner.tenants().await
    }
    async fn next_epoch(&self) -> crate::store::Result<crate::store::Epoch> {
        self.inner.next_epoch().await
    }
    async fn current_epoch(&self) -> crate::store::Result<crate::store::Epoch> {
        self.inner.current_epoch().await
    }
    async fn raise_epoch(
        &self,
        floor: crate::store::Epoch,
    ) -> crate::store::Result<crate::store::Epoch> {
        self.inner.raise_epoch(floor).await
    }
    async fn snapshot(&self) -> crate::store::Result<crate::store::Snapshot> {
        self.inner.snapshot().await
    }
    async fn restore(
        &self,
        entries: Vec<crate::store::Entry>,
        revisions: std::collections::BTreeMap<String, crate::store::Version>,
        force: bool,
        floor: crate::store::Epoch,
    ) -> crate::store::Result<crate::store::Epoch> {
        self.inner.restore(entries, revisions, force, floor).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<crate::store::Change> {
        self.inner.subscribe()
    }
    async fn acquire_lease(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> crate::store::Result<Option<crate::store::Epoch>> {
        self.inner.acquire_lease(holder, ttl).await
    }
    async fn release_lease(&self, holder: &str) -> crate::store::Result<()> {
        self.inner.release_lease(holder).await
    }
    async fn lease_holder(&self) -> crate::store::Result<Option<(String, crate::store::Epoch)>> {
        self.inner.lease_holder().await
    }
}
