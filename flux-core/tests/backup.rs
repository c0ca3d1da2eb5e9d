//! Restores racing other writes: a token revoked while a restore is on its way to the store
//! stays revoked, on the embedded store and on a real Redis.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flux_core::backup::{self, BackupKey};
use flux_core::store::redb::RedbStore;
use flux_core::store::{
    self, Change, DynStore, Entry, Epoch, Expect, Key, Result, Snapshot, Store, Txn, Version,
    Versioned,
};
use flux_core::testing::RedisServer;

/// A store whose `restore` first lets another writer revoke a token, then hands the restore
/// to the real store: the revocation lands after `backup::restore` started and before the
/// store's atomic step, the window a read-then-restore loses.
#[derive(Debug)]
struct RevokeDuringRestore {
    inner: DynStore,
    revocation: Key,
}

#[async_trait::async_trait]
impl Store for RevokeDuringRestore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    fn unwritable(&self) -> Option<String> {
        self.inner.unwritable()
    }
    async fn get(&self, key: &Key) -> Result<Option<Versioned>> {
        self.inner.get(key).await
    }
    async fn commit(&self, txn: Txn) -> Result<Version> {
        self.inner.commit(txn).await
    }
    async fn list(&self, tenant: &str, prefix: &str) -> Result<Vec<Entry>> {
        self.inner.list(tenant, prefix).await
    }
    async fn list_range(
        &self,
        tenant: &str,
        range: &flux_core::store::Range,
    ) -> Result<Vec<Entry>> {
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
        revisions: BTreeMap<String, Version>,
        force: bool,
        floor: Epoch,
    ) -> Result<Epoch> {
        self.inner
            .put(self.revocation.clone(), b"1".to_vec(), Expect::Any)
            .await?;
        self.inner.restore(entries, revisions, force, floor).await
    }
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
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
}

async fn revocation_during_a_restore_is_kept(inner: DynStore) {
    let key = BackupKey::from_audit_key(&[5; 32]);
    let before = Key::new("_system", "revoked/acme/before").unwrap();
    inner
        .put(before.clone(), b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    inner
        .put(
            Key::new("acme", "jobs/1").unwrap(),
            b"{}".to_vec(),
            Expect::Absent,
        )
        .await
        .unwrap();
    let bytes = backup::create(inner.as_ref(), 1, &key).await.unwrap();
    let during = Key::new("_system", "revoked/acme/during").unwrap();
    let racing = RevokeDuringRestore {
        inner: inner.clone(),
        revocation: during.clone(),
    };
    let b = backup::decode(&bytes, &key).unwrap();
    backup::restore(&racing, b, true, vec![]).await.unwrap();
    assert!(
        inner.get(&during).await.unwrap().is_some(),
        "the token revoked while the restore ran is revoked again"
    );
    assert!(inner.get(&before).await.unwrap().is_some());
    assert!(
        inner
            .get(&Key::new("acme", "jobs/1").unwrap())
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn a_revocation_made_during_a_restore_is_kept_on_redb() {
    let dir = tempfile::tempdir().unwrap();
    let s: DynStore = Arc::new(RedbStore::open(dir.path().join("flux.redb")).await.unwrap());
    revocation_during_a_restore_is_kept(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_made_during_a_restore_is_kept_on_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let s = store::open(&redis.url()).await.unwrap();
    revocation_during_a_restore_is_kept(s).await;
}
