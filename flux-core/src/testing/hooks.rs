//! A store wrapper for tests that need a concurrent write to land at the worst moment: just
//! before a transaction reaches the real store.

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
impl crate::store::Layer for BeforeCommit {
    fn inner(&self) -> &dyn crate::store::Store {
        self.inner.as_ref()
    }
    async fn commit(&self, txn: crate::store::Txn) -> crate::store::Result<crate::store::Version> {
        if let Some(f) = (self.hook)(&txn) {
            f.await;
        }
        self.inner.commit(txn).await
    }
}
