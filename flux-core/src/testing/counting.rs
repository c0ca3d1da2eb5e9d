//! A store wrapper that counts what is read through it, so tests can check that a listing or a
//! follow costs about what it returns.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::store::{DynStore, Entry, Key, Layer, Range, Result, Store, Txn, Version, Versioned};

/// Reads made through a [`Counting`] store.
#[derive(Debug, Default)]
pub struct ReadCounts {
    gets: AtomicU64,
    calls: AtomicU64,
    entries: AtomicU64,
}

impl ReadCounts {
    /// Objects read so far: every `get`, plus every entry a listing returned.
    pub fn objects(&self) -> u64 {
        self.gets.load(Relaxed) + self.entries.load(Relaxed)
    }

    /// Entries returned by `list` and `list_range` so far.
    pub fn listed(&self) -> u64 {
        self.entries.load(Relaxed)
    }

    /// Read calls so far (`get`, `list`, `list_range`).
    pub fn calls(&self) -> u64 {
        self.calls.load(Relaxed) + self.gets.load(Relaxed)
    }

    pub fn reset(&self) {
        self.gets.store(0, Relaxed);
        self.calls.store(0, Relaxed);
        self.entries.store(0, Relaxed);
    }
}

/// Passes everything to the inner store and counts the reads.
#[derive(Debug)]
pub struct Counting {
    inner: DynStore,
    counts: Arc<ReadCounts>,
}

impl Counting {
    /// The wrapped store and its counters.
    pub fn wrap(inner: DynStore) -> (DynStore, Arc<ReadCounts>) {
        let counts = Arc::new(ReadCounts::default());
        (
            Arc::new(Counting {
                inner,
                counts: counts.clone(),
            }),
            counts,
        )
    }

    fn listed(&self, entries: &Result<Vec<Entry>>) {
        self.counts.calls.fetch_add(1, Relaxed);
        if let Ok(e) = entries {
            self.counts.entries.fetch_add(e.len() as u64, Relaxed);
        }
    }
}

#[async_trait::async_trait]
impl Layer for Counting {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        self.counts.gets.fetch_add(1, Relaxed);
        self.inner.get(key).await
    }
    async fn commit_many(&self, txns: Vec<Txn>) -> Vec<Result<Version>> {
        self.inner.commit_many(txns).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        let r = self.inner.list(tenant, prefix).await;
        self.listed(&r);
        r
    }
    async fn list_range(&self, tenant: &str, range: &Range) -> Result<Vec<Entry>> {
        let r = self.inner.list_range(tenant, range).await;
        self.listed(&r);
        r
    }
}
