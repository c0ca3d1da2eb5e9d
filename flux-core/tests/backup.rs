//! Restores racing other writes: a token revoked while a restore is on its way to the store
//! stays revoked, on the embedded store and on a real Redis.

use std::collections::BTreeMap;
use std::sync::Arc;

use flux_core::backup::{self, BackupKey};
use flux_core::store::redb::RedbStore;
use flux_core::store::{self, DynStore, Entry, Epoch, Expect, Key, Layer, Result, Store, Version};
use flux_core::testing::RedisServer;

mod common;

use common::put_new;

/// A store whose `restore` first lets another writer revoke a token, then hands the restore
/// to the real store: the revocation lands after `backup::restore` started and before the
/// store's atomic step, the window a read-then-restore loses.
#[derive(Debug)]
struct RevokeDuringRestore {
    inner: DynStore,
    revocation: Key,
}

#[async_trait::async_trait]
impl Layer for RevokeDuringRestore {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
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
}

async fn revocation_during_a_restore_is_kept(inner: DynStore) {
    let key = BackupKey::from_audit_key(&[5; 32]);
    let before = Key::new("_system", "revoked/acme/before").unwrap();
    inner
        .put(before.clone(), b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    put_new(inner.as_ref(), "acme", "jobs/1", b"{}").await;
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
