//! The conformance suite every [`Store`] backend must pass (feature `testing`).
//!
//! Each check takes a [`Fixture`]: a fresh, empty store and a *peer* handle on the same data
//! (another connection for a shared backend, standing in for another fluxd node; the same handle
//! for the embedded one). Checks panic with a message naming the broken invariant.
//! [`store_conformance_tests!`](crate::store_conformance_tests) expands to one `#[tokio::test]`
//! per check for a backend.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::{DynStore, Expect, Key, Store, StoreError, Txn};

/// A fresh store plus whatever keeps it alive (temp dir, redis-server process).
pub struct Fixture {
    pub store: DynStore,
    pub peer: DynStore,
    /// Another empty store of the same backend (restores into a fresh store).
    pub fresh: Option<DynStore>,
    pub guard: Box<dyn std::any::Any + Send + Sync>,
}

fn key(tenant: &str, path: &str) -> Key {
    Key::new(tenant, path).expect("valid test key")
}

async fn put(s: &dyn Store, k: &Key, v: &str, e: Expect) -> Result<u64, StoreError> {
    s.put(k.clone(), v.as_bytes().to_vec(), e).await
}

/// Absent/Version/Any expectations are enforced and a failed CAS writes nothing.
pub async fn cas_rules(f: &Fixture) {
    let s = f.store.as_ref();
    let k = key("acme", "jobs/1");
    assert_eq!(s.get(&k).await.unwrap(), None, "fresh store must be empty");
    let v1 = put(s, &k, "a", Expect::Absent).await.unwrap();
    assert!(v1 > 0);
    let err = put(s, &k, "b", Expect::Absent).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { found: Some(v), expected: Expect::Absent, .. } if v == v1),
        "Absent on an existing key must conflict, got {err:?}"
    );
    let v2 = put(s, &k, "b", Expect::Version(v1)).await.unwrap();
    assert!(v2 > v1, "versions must grow: {v1} then {v2}");
    let err = put(s, &k, "stale", Expect::Version(v1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { found: Some(v), .. } if v == v2),
        "{err:?}"
    );
    let got = f
        .peer
        .get(&k)
        .await
        .unwrap()
        .expect("object visible to peer");
    assert_eq!(
        (got.version, got.value.as_slice()),
        (v2, &b"b"[..]),
        "failed CAS must not write"
    );
    let v3 = put(s, &k, "c", Expect::Any).await.unwrap();
    assert!(v3 > v2);
    let err = put(s, &key("acme", "jobs/none"), "x", Expect::Version(v3))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { found: None, .. }),
        "{err:?}"
    );
    assert_eq!(s.get(&key("acme", "jobs/none")).await.unwrap(), None);
}

/// Deleting is conditional too, and a re-created key gets a version above any it had.
pub async fn delete_and_recreate_never_reuse_a_version(f: &Fixture) {
    let s = f.store.as_ref();
    let k = key("acme", "states/motd");
    let v1 = put(s, &k, "1", Expect::Absent).await.unwrap();
    let err = s
        .delete(k.clone(), Expect::Version(v1 + 100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    assert!(
        s.get(&k).await.unwrap().is_some(),
        "failed delete must keep the object"
    );
    s.delete(k.clone(), Expect::Version(v1)).await.unwrap();
    assert_eq!(s.get(&k).await.unwrap(), None);
    let err = put(s, &k, "stale", Expect::Version(v1)).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { found: None, .. }),
        "{err:?}"
    );
    let v2 = put(s, &k, "2", Expect::Absent).await.unwrap();
    assert!(v2 > v1, "re-created key reused version: {v1} then {v2}");
}

/// Listing shows every object once, whatever wrote it: a put of an object that exists leaves
/// it listed once, and an object deleted and created again (in the same batch of commits, or
/// one after the other) is listed again.
pub async fn rewritten_and_recreated_objects_are_listed_once(f: &Fixture) {
    let s = f.store.as_ref();
    let (a, b, c) = (
        key("acme", "objs/a"),
        key("acme", "objs/b"),
        key("acme", "objs/c"),
    );
    let va = put(s, &a, "a1", Expect::Absent).await.unwrap();
    put(s, &a, "a2", Expect::Version(va)).await.unwrap();
    put(s, &b, "b1", Expect::Absent).await.unwrap();
    put(s, &c, "c1", Expect::Absent).await.unwrap();
    s.delete(b.clone(), Expect::Any).await.unwrap();
    put(s, &b, "b2", Expect::Absent).await.unwrap();
    // Deleted and put back by concurrent commits, which may share a batch.
    let (gone, back) = tokio::join!(
        s.commit(Txn::new().delete(c.clone(), Expect::Any)),
        s.commit(Txn::new().put(a.clone(), b"a3".to_vec(), Expect::Any)),
    );
    gone.unwrap();
    back.unwrap();
    s.commit(Txn::new().put(c.clone(), b"c2".to_vec(), Expect::Absent))
        .await
        .unwrap();
    let listed: Vec<(String, Vec<u8>)> = s
        .list("acme", "objs/")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.key.path().to_string(), e.value))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("objs/a".to_string(), b"a3".to_vec()),
            ("objs/b".to_string(), b"b2".to_vec()),
            ("objs/c".to_string(), b"c2".to_vec()),
        ]
    );
}

/// A write carrying an epoch below the current one is rejected, whatever its writer believes
/// about its lease: the store has no clock, only the epoch counter.
pub async fn stale_epoch_write_is_fenced(f: &Fixture) {
    let s = f.store.as_ref();
    let k = key("_system", "leader-only");
    let e1 = s.next_epoch().await.unwrap();
    s.commit(
        Txn::new()
            .put(k.clone(), b"from e1".to_vec(), Expect::Any)
            .fenced(e1),
    )
    .await
    .unwrap();
    // Another node wins leadership: the old leader still holds e1 and its lease may still
    // look valid on its own clock.
    let e2 = f.peer.next_epoch().await.unwrap();
    assert!(e2 > e1, "epochs must grow: {e1} then {e2}");
    assert_eq!(s.current_epoch().await.unwrap(), e2);
    let err = s
        .commit(
            Txn::new()
                .put(k.clone(), b"stale leader".to_vec(), Expect::Any)
                .fenced(e1),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { presented, current } if presented == e1 && current == e2),
        "{err:?}"
    );
    let err = s
        .commit(
            Txn::new()
                .put(k.clone(), b"future".to_vec(), Expect::Any)
                .fenced(e2 + 5),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { .. }),
        "an epoch never issued must be fenced too"
    );
    assert_eq!(
        s.get(&k).await.unwrap().unwrap().value,
        b"from e1",
        "fenced writes must not land"
    );
    f.peer
        .commit(
            Txn::new()
                .put(k.clone(), b"from e2".to_vec(), Expect::Any)
                .fenced(e2),
        )
        .await
        .unwrap();
    // raise_epoch never lowers the epoch.
    assert_eq!(s.raise_epoch(1).await.unwrap(), e2);
    assert_eq!(s.raise_epoch(e2 + 10).await.unwrap(), e2 + 10);
    assert_eq!(f.peer.current_epoch().await.unwrap(), e2 + 10);
}

/// A transaction whose last check fails writes none of its earlier operations.
pub async fn transactions_are_all_or_nothing(f: &Fixture) {
    let s = f.store.as_ref();
    let (job, task, queue) = (
        key("acme", "jobs/j1"),
        key("acme", "tasks/t1"),
        key("acme", "queue/a1"),
    );
    let vj = put(s, &job, "queued", Expect::Absent).await.unwrap();
    let vq = put(s, &queue, "[]", Expect::Absent).await.unwrap();
    let bad = Txn::new()
        .put(job.clone(), b"assigned".to_vec(), Expect::Version(vj))
        .put(task.clone(), b"t1".to_vec(), Expect::Absent)
        .delete(queue.clone(), Expect::Version(vq + 1000));
    let err = s.commit(bad).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { ref key, .. } if key == "acme:queue/a1"),
        "{err:?}"
    );
    assert_eq!(
        s.get(&job).await.unwrap().unwrap().value,
        b"queued",
        "partial write of job"
    );
    assert_eq!(s.get(&task).await.unwrap(), None, "partial write of task");
    assert!(
        s.get(&queue).await.unwrap().is_some(),
        "partial delete of queue"
    );

    let good = Txn::new()
        .put(job.clone(), b"assigned".to_vec(), Expect::Version(vj))
        .put(task.clone(), b"t1".to_vec(), Expect::Absent)
        .delete(queue.clone(), Expect::Version(vq));
    let rev = s.commit(good).await.unwrap();
    assert_eq!(s.get(&job).await.unwrap().unwrap().version, rev);
    assert_eq!(s.get(&task).await.unwrap().unwrap().version, rev);
    assert_eq!(s.get(&queue).await.unwrap(), None);

    // A check-only transaction guards without writing.
    let before = s.get(&job).await.unwrap().unwrap();
    let r = s
        .commit(Txn::new().check(job.clone(), Expect::Version(rev)))
        .await
        .unwrap();
    assert_eq!(
        r, rev,
        "a check-only transaction must not move the revision"
    );
    let err = s
        .commit(Txn::new().check(job.clone(), Expect::Absent))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }));
    assert_eq!(s.get(&job).await.unwrap().unwrap(), before);

    let cross = Txn::new()
        .put(key("acme", "x"), b"1".to_vec(), Expect::Any)
        .put(key("other", "x"), b"1".to_vec(), Expect::Any);
    assert!(matches!(
        s.commit(cross).await,
        Err(StoreError::InvalidTxn(_))
    ));
    assert_eq!(s.get(&key("acme", "x")).await.unwrap(), None);
}

/// Listing returns exactly one tenant's objects under a prefix, ordered by path.
pub async fn listing_is_scoped_to_one_tenant(f: &Fixture) {
    let s = f.store.as_ref();
    for (t, p) in [
        ("acme", "jobs/2"),
        ("acme", "jobs/1"),
        ("acme", "jobsx/1"),
        ("acme", "states/a"),
        ("acme-corp", "jobs/1"),
        ("acme-corp", "jobs/3"),
        ("acm", "jobs/9"),
    ] {
        put(s, &key(t, p), &format!("{t}/{p}"), Expect::Absent)
            .await
            .unwrap();
    }
    let paths = |entries: Vec<super::Entry>| -> Vec<String> {
        entries
            .into_iter()
            .map(|e| {
                assert_eq!(
                    e.value,
                    format!("{}/{}", e.key.tenant(), e.key.path()).into_bytes()
                );
                format!("{}:{}", e.key.tenant(), e.key.path())
            })
            .collect()
    };
    assert_eq!(
        paths(f.peer.list("acme", "jobs/").await.unwrap()),
        ["acme:jobs/1", "acme:jobs/2"]
    );
    assert_eq!(
        paths(s.list("acme-corp", "jobs/").await.unwrap()),
        ["acme-corp:jobs/1", "acme-corp:jobs/3"]
    );
    assert_eq!(paths(s.list("acme", "").await.unwrap()).len(), 4);
    assert!(s.list("nobody", "").await.unwrap().is_empty());
    let tenants: BTreeSet<String> = s.tenants().await.unwrap().into_iter().collect();
    assert_eq!(
        tenants,
        ["acm", "acme", "acme-corp"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    assert!(matches!(
        s.list("Bad Tenant", "").await,
        Err(StoreError::InvalidKey(_))
    ));
}

/// The next change notice that is not a resync, by `deadline`.
async fn next_change(
    rx: &mut tokio::sync::broadcast::Receiver<Arc<super::Change>>,
    deadline: tokio::time::Instant,
) -> Arc<super::Change> {
    loop {
        let change = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("no change notice by the deadline")
            .expect("change channel closed");
        if !change.is_resync() {
            return change;
        }
    }
}

/// A commit on one handle wakes a subscriber of the peer handle, naming tenant and path.
pub async fn commits_notify_subscribers(f: &Fixture) {
    let mut rx = f.peer.subscribe();
    let k = key("acme", "tasks/agent-1/t9");
    let rev = put(f.store.as_ref(), &k, "task", Expect::Absent)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let change = next_change(&mut rx, deadline).await;
    assert_eq!(change.tenant, "acme");
    assert_eq!(change.revision, rev);
    assert_eq!(change.paths, vec!["tasks/agent-1/t9".to_string()]);
    assert!(change.deleted.is_empty(), "{change:?}");
    // A transaction that deletes one path and writes another says which one it deleted.
    let mut rx = f.peer.subscribe();
    let next = key("acme", "tasks/agent-1/t11");
    let rev = f
        .store
        .commit(
            Txn::new()
                .delete(k.clone(), Expect::Any)
                .put(next, b"t".to_vec(), Expect::Absent),
        )
        .await
        .unwrap();
    let change = next_change(&mut rx, deadline).await;
    assert_eq!(change.revision, rev);
    assert_eq!(
        change.paths,
        vec!["tasks/agent-1/t9".to_string(), "tasks/agent-1/t11".into()]
    );
    assert_eq!(change.deleted, vec!["tasks/agent-1/t9".to_string()]);
    assert!(change.deletes("tasks/agent-1/t9") && !change.deletes("tasks/agent-1/t11"));
    // wait_for_change filters by tenant and prefix.
    let mut rx = f.peer.subscribe();
    put(
        f.store.as_ref(),
        &key("other", "tasks/agent-1/x"),
        "x",
        Expect::Any,
    )
    .await
    .unwrap();
    let soon = tokio::time::Instant::now() + Duration::from_millis(300);
    assert!(!super::wait_for_change(&mut rx, "acme", "tasks/agent-1/", soon).await);
    let store = f.store.clone();
    let writer = tokio::spawn(async move {
        put(
            store.as_ref(),
            &key("acme", "tasks/agent-1/t10"),
            "t",
            Expect::Absent,
        )
        .await
    });
    let later = tokio::time::Instant::now() + Duration::from_secs(5);
    assert!(super::wait_for_change(&mut rx, "acme", "tasks/agent-1/", later).await);
    writer.await.unwrap().unwrap();
}

/// N writers increment one counter through CAS, over both handles, with retries on conflict.
/// No update may be lost, and no two successful writes may have read the same version.
pub async fn concurrent_cas_increments_lose_no_update(f: &Fixture) {
    const WRITERS: usize = 8;
    const EACH: usize = 25;
    let k = key("acme", "counter");
    put(f.store.as_ref(), &k, "0", Expect::Absent)
        .await
        .unwrap();
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let s: Arc<dyn Store> = if w % 2 == 0 {
            f.store.clone()
        } else {
            f.peer.clone()
        };
        let k = k.clone();
        handles.push(tokio::spawn(async move {
            let mut history = Vec::new();
            let mut conflicts = 0usize;
            while history.len() < EACH {
                assert!(conflicts < 100_000, "writer {w} starved");
                let cur = s.get(&k).await.unwrap().unwrap();
                let n: u64 = String::from_utf8(cur.value).unwrap().parse().unwrap();
                match s
                    .put(
                        k.clone(),
                        (n + 1).to_string().into_bytes(),
                        Expect::Version(cur.version),
                    )
                    .await
                {
                    Ok(v) => history.push((cur.version, v, n + 1)),
                    Err(StoreError::Conflict { .. }) => conflicts += 1,
                    Err(e) => panic!("writer {w}: {e}"),
                }
            }
            history
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    let total = (WRITERS * EACH) as u64;
    let last = f.store.get(&k).await.unwrap().unwrap();
    assert_eq!(
        String::from_utf8(last.value).unwrap(),
        total.to_string(),
        "lost update"
    );
    let bases: BTreeSet<u64> = all.iter().map(|h| h.0).collect();
    assert_eq!(
        bases.len(),
        all.len(),
        "two writes succeeded from the same version"
    );
    // The successful writes form one chain: sorted by new version, each read the previous one.
    all.sort_by_key(|h| h.1);
    for pair in all.windows(2) {
        assert_eq!(
            pair[1].0, pair[0].1,
            "write did not build on its predecessor"
        );
        assert_eq!(pair[1].2, pair[0].2 + 1);
    }
}

/// One batch of transactions with every kind of outcome: each is checked on its own, in order,
/// against what the earlier ones of the batch left, so a conflicting or fenced one fails alone
/// and leaves no trace while the others commit.
pub async fn a_batch_with_mixed_outcomes_commits_each_on_its_own(f: &Fixture) {
    let s = f.store.as_ref();
    let a = key("acme", "jobs/a");
    let va = put(s, &a, "a", Expect::Absent).await.unwrap();
    let epoch = s.next_epoch().await.unwrap();
    let bytes = |v: &str| v.as_bytes().to_vec();
    let txns = vec![
        // 0: commits.
        Txn::new().put(key("acme", "jobs/x"), bytes("x"), Expect::Absent),
        // 1: conflicts with what was there before the batch.
        Txn::new().put(a.clone(), bytes("a2"), Expect::Absent),
        // 2: a stale epoch.
        Txn::new()
            .put(key("acme", "jobs/y"), bytes("y"), Expect::Any)
            .fenced(epoch - 1),
        // 3: the current epoch.
        Txn::new()
            .put(key("acme", "jobs/z"), bytes("z"), Expect::Any)
            .fenced(epoch),
        // 4: conflicts with transaction 0 of the same batch.
        Txn::new().put(key("acme", "jobs/x"), bytes("x2"), Expect::Absent),
        // 5: its second operation fails, so its first is not written either.
        Txn::new()
            .put(key("acme", "jobs/w"), bytes("w"), Expect::Absent)
            .check(a.clone(), Expect::Version(va + 1000)),
        // 6: another tenant, unaffected.
        Txn::new().put(key("beta", "jobs/b"), bytes("b"), Expect::Absent),
        // 7: builds on the object as transaction 0 left it... which it cannot know the version
        // of, so it expects "anything" and must see x.
        Txn::new().put(key("acme", "jobs/x"), bytes("x3"), Expect::Any),
    ];
    let results = s.commit_many(txns).await;
    assert_eq!(results.len(), 8, "one result per transaction");
    let ok = |i: usize| match &results[i] {
        Ok(v) => *v,
        Err(e) => panic!("transaction {i} should commit: {e}"),
    };
    let (v0, v3, v6, v7) = (ok(0), ok(3), ok(6), ok(7));
    assert!(
        va < v0 && v0 < v3 && v3 < v7,
        "revisions of one tenant grow in batch order: {va} {v0} {v3} {v7}"
    );
    assert!(v6 > 0);
    assert!(
        matches!(&results[1], Err(StoreError::Conflict { found: Some(v), .. }) if *v == va),
        "{:?}",
        results[1]
    );
    assert!(
        matches!(&results[2], Err(StoreError::Fenced { presented, current }) if *presented == epoch - 1 && *current == epoch),
        "{:?}",
        results[2]
    );
    assert!(
        matches!(&results[4], Err(StoreError::Conflict { found: Some(v), .. }) if *v == v0),
        "the batch's own earlier write must be seen: {:?}",
        results[4]
    );
    assert!(
        matches!(&results[5], Err(StoreError::Conflict { .. })),
        "{:?}",
        results[5]
    );
    let p = f.peer.as_ref();
    let get = |k: Key| async move { p.get(&k).await.unwrap().map(|v| (v.version, v.value)) };
    assert_eq!(get(a.clone()).await, Some((va, bytes("a"))));
    assert_eq!(get(key("acme", "jobs/x")).await, Some((v7, bytes("x3"))));
    assert_eq!(
        get(key("acme", "jobs/y")).await,
        None,
        "fenced write applied"
    );
    assert_eq!(get(key("acme", "jobs/z")).await, Some((v3, bytes("z"))));
    assert_eq!(get(key("acme", "jobs/w")).await, None, "half a transaction");
    assert_eq!(get(key("beta", "jobs/b")).await, Some((v6, bytes("b"))));

    // The same under real concurrency: many callers at once (gathered into batches by the
    // backend), every other one bound to conflict.
    let taken = key("acme", "taken");
    put(s, &taken, "t", Expect::Absent).await.unwrap();
    let mut handles = Vec::new();
    for i in 0..200u32 {
        let store = if i % 3 == 0 {
            f.peer.clone()
        } else {
            f.store.clone()
        };
        let taken = taken.clone();
        handles.push(tokio::spawn(async move {
            let txn = if i % 2 == 0 {
                Txn::new().put(
                    key("acme", &format!("many/{i:04}")),
                    bytes("m"),
                    Expect::Absent,
                )
            } else {
                Txn::new()
                    .put(
                        key("acme", &format!("many/{i:04}")),
                        bytes("m"),
                        Expect::Absent,
                    )
                    .check(taken, Expect::Absent)
            };
            store.commit(txn).await
        }));
    }
    let mut versions = BTreeSet::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.await.unwrap() {
            Ok(v) if i % 2 == 0 => assert!(versions.insert(v), "revision {v} given twice"),
            Err(StoreError::Conflict { .. }) if i % 2 == 1 => {}
            other => panic!("caller {i}: {other:?}"),
        }
    }
    let listed = p.list("acme", "many/").await.unwrap();
    assert_eq!(listed.len(), 100, "exactly the non-conflicting writes");
    assert!(listed.iter().all(|e| versions.contains(&e.version)));
}

/// Concurrent writers on a few keys: every commit of a key is announced, to subscribers of both
/// handles, in the order of its revisions.
pub async fn notifications_for_a_key_arrive_in_commit_order(f: &Fixture) {
    const KEYS: usize = 4;
    const WRITERS: usize = 16;
    const EACH: usize = 15;
    let mut rxs = [f.store.subscribe(), f.peer.subscribe()];
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let s = if w % 2 == 0 {
            f.store.clone()
        } else {
            f.peer.clone()
        };
        handles.push(tokio::spawn(async move {
            let k = key("acme", &format!("order/{}", w % KEYS));
            let mut mine = Vec::new();
            for i in 0..EACH {
                mine.push((
                    k.path().to_string(),
                    s.put(k.clone(), format!("{w}-{i}").into_bytes(), Expect::Any)
                        .await
                        .unwrap(),
                ));
            }
            mine
        }));
    }
    let mut expected: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
    for h in handles {
        for (path, v) in h.await.unwrap() {
            expected.entry(path).or_default().push(v);
        }
    }
    for vs in expected.values_mut() {
        vs.sort_unstable();
    }
    let total = WRITERS * EACH;
    for (n, rx) in rxs.iter_mut().enumerate() {
        let mut seen: std::collections::BTreeMap<String, Vec<u64>> = Default::default();
        let mut count = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while count < total {
            let change = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .unwrap_or_else(|_| panic!("subscriber {n}: only {count} of {total} notices"))
                .unwrap_or_else(|e| panic!("subscriber {n}: {e}"));
            assert!(!change.is_resync(), "subscriber {n}: unexpected resync");
            for p in &change.paths {
                seen.entry(p.clone()).or_default().push(change.revision);
                count += 1;
            }
        }
        assert_eq!(
            seen, expected,
            "subscriber {n}: every commit of a key, in revision order"
        );
    }
}

/// Range reads: pages in both directions cover every object under the prefix exactly once, in
/// order, and nothing outside it (another prefix sharing its first letters, another tenant).
pub async fn range_reads_page_in_both_directions(f: &Fixture) {
    use super::Range;
    let s = f.store.as_ref();
    let mut txn = Txn::new();
    let mut want = Vec::new();
    for i in 0..53u32 {
        let p = format!("jobs/{i:03}");
        txn = txn.put(key("acme", &p), p.clone().into_bytes(), Expect::Absent);
        want.push(p);
    }
    s.commit(
        txn.put(key("acme", "jobsx/1"), b"x".to_vec(), Expect::Absent)
            .put(key("acme", "job"), b"x".to_vec(), Expect::Absent)
            .put(key("acme", "a"), b"x".to_vec(), Expect::Absent)
            .put(key("acme", "z"), b"x".to_vec(), Expect::Absent),
    )
    .await
    .unwrap();
    put(s, &key("acme-corp", "jobs/000"), "x", Expect::Absent)
        .await
        .unwrap();
    let p = f.peer.as_ref();
    for reverse in [false, true] {
        let mut range = Range {
            reverse,
            ..Range::first("jobs/", 7)
        };
        let mut got = Vec::new();
        loop {
            let page = p.list_range("acme", &range).await.unwrap();
            assert!(page.len() <= 7, "a page holds at most its limit");
            for e in &page {
                assert_eq!(e.value, e.key.path().as_bytes(), "entry value");
                assert_eq!(e.key.tenant(), "acme");
            }
            let Some(last) = page.last() else { break };
            range = range.clone().after(last.key.path());
            got.extend(page.iter().map(|e| e.key.path().to_string()));
        }
        let mut expected = want.clone();
        if reverse {
            expected.reverse();
        }
        assert_eq!(
            got, expected,
            "pages (reverse: {reverse}) cover the prefix once, in order"
        );
    }
    let first = |r: Range| async move {
        p.list_range("acme", &r)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.key.path().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        first(Range::last("jobs/", 2)).await,
        ["jobs/052", "jobs/051"]
    );
    assert_eq!(first(Range::first("jobs/", 0)).await, Vec::<String>::new());
    // A cursor outside the prefix: before it (ascending) starts at the beginning; after it
    // (descending) at the end; beyond it, nothing.
    assert_eq!(
        first(Range::first("jobs/", 1).after("a")).await,
        ["jobs/000"]
    );
    assert_eq!(
        first(Range::last("jobs/", 1).after("z")).await,
        ["jobs/052"]
    );
    assert!(first(Range::first("jobs/", 5).after("z")).await.is_empty());
    assert!(first(Range::last("jobs/", 5).after("a")).await.is_empty());
    // The empty prefix is the whole tenant, and only it.
    let all = first(Range::first("", 1000)).await;
    assert_eq!(all.len(), 53 + 4);
    assert_eq!(all.first().map(String::as_str), Some("a"));
    assert_eq!(all.last().map(String::as_str), Some("z"));
    assert!(
        p.list_range("acme", &Range::first("jobs {", 1))
            .await
            .is_err(),
        "a prefix is checked like a path"
    );
}

/// The lease has one holder at a time (across handles, i.e. nodes); renewing keeps the term's
/// epoch; releasing lets another holder in at once, with a higher epoch.
pub async fn one_lease_holder_at_a_time_with_a_new_epoch_per_term(f: &Fixture) {
    let ttl = Duration::from_secs(30);
    let before = f.store.current_epoch().await.unwrap();
    let e1 = f
        .store
        .acquire_lease("node-a", ttl)
        .await
        .unwrap()
        .expect("a free lease is granted");
    assert!(e1 > before, "acquisition must move the epoch up");
    assert_eq!(f.store.current_epoch().await.unwrap(), e1);
    assert_eq!(f.peer.acquire_lease("node-b", ttl).await.unwrap(), None);
    assert_eq!(
        f.peer.lease_holder().await.unwrap(),
        Some(("node-a".to_string(), e1))
    );
    // Renewal: same term, same epoch, epoch not moved.
    assert_eq!(
        f.store.acquire_lease("node-a", ttl).await.unwrap(),
        Some(e1)
    );
    assert_eq!(f.store.current_epoch().await.unwrap(), e1);
    // Releasing by a non-holder does nothing.
    f.peer.release_lease("node-b").await.unwrap();
    assert_eq!(f.peer.acquire_lease("node-b", ttl).await.unwrap(), None);
    f.store.release_lease("node-a").await.unwrap();
    assert_eq!(f.store.lease_holder().await.unwrap(), None);
    let e2 = f
        .peer
        .acquire_lease("node-b", ttl)
        .await
        .unwrap()
        .expect("a released lease is free");
    assert!(e2 > e1);
    assert!(f.store.acquire_lease("bad|name", ttl).await.is_err());
}

/// A lease not renewed lapses after its TTL; the next holder's epoch fences every write of the
/// previous term, even though the previous holder never learned it lost the lease.
pub async fn a_lapsed_lease_passes_to_another_holder_whose_epoch_fences_the_old(f: &Fixture) {
    let ttl = Duration::from_millis(300);
    let e1 = f.store.acquire_lease("node-a", ttl).await.unwrap().unwrap();
    let k = key("_system", "leader-work");
    f.store
        .commit(
            Txn::new()
                .fenced(e1)
                .put(k.clone(), b"a".to_vec(), Expect::Any),
        )
        .await
        .expect("the holder's fenced write");
    let start = std::time::Instant::now();
    // node-b takes a long lease, so the check at the end cannot see it lapse on a slow machine.
    let e2 = loop {
        if let Some(e) = f
            .peer
            .acquire_lease("node-b", Duration::from_secs(60))
            .await
            .unwrap()
        {
            break e;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        start.elapsed() >= ttl - Duration::from_millis(50),
        "lease taken over after {:?}, before its TTL",
        start.elapsed()
    );
    assert!(e2 > e1);
    let stale = f
        .store
        .commit(
            Txn::new()
                .fenced(e1)
                .put(k.clone(), b"stale".to_vec(), Expect::Any),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::Fenced { .. })),
        "old term wrote: {stale:?}"
    );
    assert_eq!(f.store.get(&k).await.unwrap().unwrap().value, b"a");
    // The old holder cannot renew its way back in while the new term lasts.
    assert_eq!(f.store.acquire_lease("node-a", ttl).await.unwrap(), None);
}

/// An epoch raised under a held lease (as a restore does) ends that term: the holder's next
/// renewal starts a new term with an epoch above the raised one.
pub async fn a_raised_epoch_ends_the_current_term(f: &Fixture) {
    let ttl = Duration::from_secs(30);
    let e1 = f.store.acquire_lease("node-a", ttl).await.unwrap().unwrap();
    assert_eq!(
        f.store.acquire_lease("node-a", ttl).await.unwrap(),
        Some(e1)
    );
    let raised = f.peer.raise_epoch(e1 + 10).await.unwrap();
    let e2 = f.store.acquire_lease("node-a", ttl).await.unwrap().unwrap();
    assert!(
        e2 > raised,
        "renewal after a raise kept epoch {e2} (raised to {raised})"
    );
    assert_eq!(
        f.store.acquire_lease("node-a", ttl).await.unwrap(),
        Some(e2)
    );
    assert_eq!(f.peer.acquire_lease("node-b", ttl).await.unwrap(), None);
}

/// A snapshot holds every object of every tenant with its version and the revision counters;
/// restoring it refuses a store holding objects (other than node records) unless forced, then
/// brings back exactly the snapshot and moves the epoch above every earlier one in the same
/// step; later writes get versions never issued before.
pub async fn snapshot_and_restore_round_trip(f: &Fixture) {
    let s = f.store.as_ref();
    put(s, &key("acme", "jobs/1"), "one", Expect::Absent)
        .await
        .unwrap();
    put(s, &key("acme", "jobs/2"), "two", Expect::Absent)
        .await
        .unwrap();
    s.put(
        key("globex", "bin/x"),
        vec![0, 159, 146, 150, 255],
        Expect::Absent,
    )
    .await
    .unwrap();
    put(s, &key("acme", "gone"), "x", Expect::Absent)
        .await
        .unwrap();
    s.delete(key("acme", "gone"), Expect::Any).await.unwrap();
    let epoch = s.next_epoch().await.unwrap();
    let snap = f.peer.snapshot().await.unwrap();
    assert_eq!(snap.epoch, epoch, "snapshot carries the current epoch");
    assert_eq!(
        snap.revisions.get("acme").copied(),
        Some(4),
        "snapshot carries the revision counters: {:?}",
        snap.revisions
    );
    let listed: Vec<(String, String)> = snap
        .entries
        .iter()
        .map(|e| (e.key.tenant().to_string(), e.key.path().to_string()))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("acme".to_string(), "jobs/1".to_string()),
            ("acme".into(), "jobs/2".into()),
            ("globex".into(), "bin/x".into())
        ],
        "a snapshot holds exactly the live objects, ordered"
    );
    assert_eq!(snap.entries[2].value, vec![0, 159, 146, 150, 255]);

    let err = s
        .restore(
            snap.entries.clone(),
            snap.revisions.clone(),
            false,
            snap.epoch,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotEmpty(3)), "{err:?}");
    assert_eq!(
        s.current_epoch().await.unwrap(),
        epoch,
        "a refused restore changes nothing"
    );
    let later = put(s, &key("acme", "jobs/3"), "three", Expect::Absent)
        .await
        .unwrap();
    let mut rx = f.peer.subscribe();
    let restored = s
        .restore(
            snap.entries.clone(),
            snap.revisions.clone(),
            true,
            snap.epoch,
        )
        .await
        .unwrap();
    assert_eq!(
        restored,
        epoch + 1,
        "the epoch moves above every earlier one"
    );
    let err = s
        .commit(
            Txn::new()
                .fenced(epoch)
                .put(key("acme", "late"), b"x".to_vec(), Expect::Any),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { .. }),
        "a pre-restore leader wrote: {err:?}"
    );
    let after = f.peer.snapshot().await.unwrap();
    assert_eq!(
        after.entries, snap.entries,
        "restore brings back exactly the snapshot"
    );
    let next = put(s, &key("acme", "jobs/4"), "four", Expect::Absent)
        .await
        .unwrap();
    assert!(
        next > later,
        "version {next} reissued after restore (had reached {later})"
    );
    // Notices of earlier commits may still be in flight on a shared backend: skip those.
    let resync = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(c) = rx.recv().await {
            if c.is_resync() {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(resync, Ok(true), "restore must tell subscribers to resync");

    // Into an empty store (another backend, say): node records do not count as content, and
    // the revision counters come from the snapshot, not only from the surviving versions.
    let fresh = f.fresh.as_ref().expect("a second empty store");
    fresh
        .put(key("_system", "nodes/n1"), b"{}".to_vec(), Expect::Any)
        .await
        .unwrap();
    let mut revs = snap.revisions.clone();
    revs.insert("acme".into(), 100);
    let e = fresh
        .restore(snap.entries.clone(), revs, false, 41)
        .await
        .unwrap();
    assert_eq!(e, 42);
    let v = put(fresh.as_ref(), &key("acme", "new"), "n", Expect::Absent)
        .await
        .unwrap();
    assert!(v > 100, "revision counter not restored: {v}");
}

/// A restore keeps the token revocations the store holds, in the same atomic step: one the
/// restored entries do not hold stays (with its value), one they hold comes from them, and
/// nothing else of the old content survives.
pub async fn restore_keeps_the_stores_revocations(f: &Fixture) {
    let s = f.store.as_ref();
    let backed_up = key("_system", "revoked/acme/old");
    put(s, &backed_up, "from-backup", Expect::Absent)
        .await
        .unwrap();
    put(s, &key("acme", "jobs/1"), "one", Expect::Absent)
        .await
        .unwrap();
    let snap = f.peer.snapshot().await.unwrap();
    // After the snapshot: a revocation, an overwritten one, and an ordinary object.
    let later = key("_system", "revoked/globex/new");
    let v = put(s, &later, "1", Expect::Absent).await.unwrap();
    put(s, &backed_up, "rewritten", Expect::Any).await.unwrap();
    put(s, &key("acme", "jobs/2"), "two", Expect::Absent)
        .await
        .unwrap();
    s.restore(snap.entries.clone(), snap.revisions.clone(), true, 0)
        .await
        .unwrap();
    let after = f.peer.snapshot().await.unwrap();
    let mut expected = snap.entries.clone();
    expected.push(super::Entry {
        key: later.clone(),
        version: v,
        value: b"1".to_vec(),
    });
    expected.sort_by(|a, b| a.key.cmp(&b.key));
    let mut got = after.entries.clone();
    got.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(
        got, expected,
        "a restore keeps the store's revocations and brings back the rest of the snapshot"
    );
}

/// An append writes under its prefix at the revision its own transaction commits at, in the same
/// atomic step as the rest of the transaction; a failed transaction appends nothing; in a batch,
/// each transaction's appends carry its own revision.
pub async fn appends_land_at_their_own_commit_revision(f: &Fixture) {
    use super::{Range, append_path};
    let s = f.store.as_ref();
    let mut rx = s.subscribe();
    let job = key("acme", "jobs/1");
    let log = key("acme", "events/");
    let r1 = s
        .commit(
            Txn::new()
                .put(job.clone(), b"j1".to_vec(), Expect::Absent)
                .append(log.clone(), b"e1a".to_vec())
                .append(log.clone(), b"e1b".to_vec())
                .append(key("acme", "other/"), b"o1".to_vec()),
        )
        .await
        .unwrap();
    let listed = f.peer.list("acme", "events/").await.unwrap();
    let got: Vec<(String, u64, Vec<u8>)> = listed
        .iter()
        .map(|e| (e.key.path().to_string(), e.version, e.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (append_path("events/", r1, 0), r1, b"e1a".to_vec()),
            (append_path("events/", r1, 1), r1, b"e1b".to_vec()),
        ],
        "appends must land at the commit's revision, in order"
    );
    assert_eq!(
        f.peer.list("acme", "other/").await.unwrap()[0].key.path(),
        append_path("other/", r1, 0),
        "each prefix counts its own appends"
    );
    let change = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let c = rx.recv().await.unwrap();
            if c.revision == r1 && c.tenant == "acme" {
                return c;
            }
        }
    })
    .await
    .expect("change notified");
    assert!(
        change.paths.contains(&append_path("events/", r1, 1)),
        "the notification names the appended paths: {:?}",
        change.paths
    );
    // A conflicting transaction appends nothing.
    let err = s
        .commit(
            Txn::new()
                .put(job.clone(), b"j2".to_vec(), Expect::Absent)
                .append(log.clone(), b"lost".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
    // So does a fenced one.
    let epoch = s.next_epoch().await.unwrap();
    let err = s
        .commit(
            Txn::new()
                .fenced(epoch + 7)
                .put(key("acme", "jobs/2"), b"j".to_vec(), Expect::Any)
                .append(log.clone(), b"lost".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err:?}");
    assert_eq!(s.list("acme", "events/").await.unwrap().len(), 2);
    // In one batch, each transaction appends at its own revision, and a failing one not at all.
    let batch = vec![
        Txn::new()
            .fenced(epoch)
            .put(key("acme", "jobs/3"), b"j".to_vec(), Expect::Absent)
            .append(log.clone(), b"b1".to_vec()),
        Txn::new()
            .put(job.clone(), b"dup".to_vec(), Expect::Absent)
            .append(log.clone(), b"lost".to_vec()),
        Txn::new().append(log.clone(), b"b3".to_vec()),
    ];
    let results = s.commit_many(batch).await;
    let (b1, b3) = (*results[0].as_ref().unwrap(), *results[2].as_ref().unwrap());
    assert!(results[1].is_err());
    assert!(r1 < b1 && b1 < b3, "revisions grow: {r1} {b1} {b3}");
    let page = f
        .peer
        .list_range(
            "acme",
            &Range::first("events/", 10).after(append_path("events/", r1, 1)),
        )
        .await
        .unwrap();
    let got: Vec<(String, Vec<u8>)> = page
        .iter()
        .map(|e| (e.key.path().to_string(), e.value.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (append_path("events/", b1, 0), b"b1".to_vec()),
            (append_path("events/", b3, 0), b"b3".to_vec()),
        ]
    );
    let err = s
        .commit(Txn::new().append(key("acme", "events"), b"x".to_vec()))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::InvalidTxn(_)), "{err:?}");
}

/// Expands to one test per conformance check. `$fixture` is an expression of type
/// `impl Future<Output = Option<Fixture>>`; `None` skips (backend not installed).
#[macro_export]
macro_rules! store_conformance_tests {
    ($fixture:expr) => {
        $crate::store_conformance_tests!(@each $fixture;
            cas_rules,
            delete_and_recreate_never_reuse_a_version,
            rewritten_and_recreated_objects_are_listed_once,
            stale_epoch_write_is_fenced,
            transactions_are_all_or_nothing,
            listing_is_scoped_to_one_tenant,
            commits_notify_subscribers,
            concurrent_cas_increments_lose_no_update,
            a_batch_with_mixed_outcomes_commits_each_on_its_own,
            notifications_for_a_key_arrive_in_commit_order,
            range_reads_page_in_both_directions,
            one_lease_holder_at_a_time_with_a_new_epoch_per_term,
            a_lapsed_lease_passes_to_another_holder_whose_epoch_fences_the_old,
            snapshot_and_restore_round_trip,
            restore_keeps_the_stores_revocations,
            a_raised_epoch_ends_the_current_term,
            appends_land_at_their_own_commit_revision
        );
    };
    (@each $fixture:expr; $($check:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                if let Some(f) = $fixture.await {
                    $crate::store::conformance::$check(&f).await;
                }
            }
        )*
    };
}
