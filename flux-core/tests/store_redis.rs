//! The store conformance suite and durability checks against a real `redis-server`.

use std::time::Duration;

use flux_core::store::conformance::Fixture;
use flux_core::store::redis::RedisStore;
use flux_core::store::{self, Expect, Key, Store, StoreError};
use flux_core::testing::RedisServer;

mod common;

use common::{acknowledged, concurrent_puts, put_new, wait_writable};

async fn fixture() -> Option<Fixture> {
    let server = RedisServer::start()?;
    let store = store::open(&server.url()).await.unwrap();
    let peer = store::open(&server.url()).await.unwrap();
    // Another database of the same server: an empty keyspace of its own.
    let fresh = store::open(&format!("redis://127.0.0.1:{}/1", server.port()))
        .await
        .unwrap();
    Some(Fixture {
        store,
        peer,
        fresh: Some(fresh),
        guard: Box::new(server),
    })
}

flux_core::store_conformance_tests!(fixture());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_redis_kill_9_with_appendfsync_always() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let epoch = s.next_epoch().await.unwrap();
    let mut versions = Vec::new();
    for i in 0..200u32 {
        let payload = format!("p{i}");
        versions.push(put_new(&s, "acme", &format!("jobs/{i:05}"), payload.as_bytes()).await);
    }
    server.kill9();
    // While Redis is down writes fail with a typed error, never a panic or a hang.
    let down = tokio::time::timeout(
        Duration::from_secs(30),
        s.put(
            Key::new("acme", "while-down").unwrap(),
            b"x".to_vec(),
            Expect::Any,
        ),
    )
    .await
    .expect("a write against a dead Redis must not hang");
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    server.restart();
    let s = RedisStore::connect(&server.url()).await.unwrap();
    for (i, v) in versions.iter().enumerate() {
        let got = acknowledged(&s, format!("jobs/{i:05}"), &i.to_string()).await;
        assert_eq!((got.version, got.value), (*v, format!("p{i}").into_bytes()));
    }
    assert_eq!(
        s.current_epoch().await.unwrap(),
        epoch,
        "fencing epoch must survive a restart"
    );
    assert_eq!(s.list("acme", "jobs/").await.unwrap().len(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_redis_kill_9_during_batched_commits() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let s = std::sync::Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut writers = Vec::new();
    for w in 0..32u32 {
        let (s, acked) = (s.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0u32..100_000 {
                let k = Key::new("acme", format!("jobs/{w:02}-{i:06}")).unwrap();
                match s
                    .put(k, format!("p{w}-{i}").into_bytes(), Expect::Absent)
                    .await
                {
                    Ok(v) => acked.lock().unwrap().push((w, i, v)),
                    Err(_) => return,
                }
            }
        }));
    }
    // Kill Redis while the writers are mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 2000 {
        assert!(std::time::Instant::now() < deadline, "writers too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill9();
    for w in writers {
        tokio::time::timeout(Duration::from_secs(60), w)
            .await
            .expect("a writer hung on a dead Redis")
            .unwrap();
    }
    let (batches, requests) = s.commit_batches().expect("group-commit counters");
    assert!(
        requests > batches,
        "the writers' commits were never batched ({requests} in {batches} calls)"
    );
    server.restart();
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let acked = acked.lock().unwrap().clone();
    for (w, i, v) in &acked {
        let got = acknowledged(&s, format!("jobs/{w:02}-{i:06}"), &format!("{w}-{i}")).await;
        assert_eq!(
            (got.version, got.value),
            (*v, format!("p{w}-{i}").into_bytes())
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_share_script_calls() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = std::sync::Arc::new(RedisStore::connect(&server.url()).await.unwrap());
    for put in concurrent_puts(&s, 256, |i| format!("jobs/{i:04}")).await {
        put.unwrap();
    }
    let (b, r) = s.commit_batches().expect("group-commit counters");
    assert_eq!(r, 256);
    assert!(b < 256, "256 concurrent commits took {b} script calls");
    assert_eq!(s.list("acme", "jobs/").await.unwrap().len(), 256);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_handle_recovers_after_redis_restarts() {
    let Some(mut server) = RedisServer::start() else {
        return;
    };
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let k = Key::new("acme", "k").unwrap();
    let v = s
        .put(k.clone(), b"1".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let mut rx = s.subscribe();
    server.restart();
    // The same handle works again once Redis is back (reconnecting on its own).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let v2 = loop {
        match s.put(k.clone(), b"2".to_vec(), Expect::Version(v)).await {
            Ok(v2) => break v2,
            Err(StoreError::Unavailable(_)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Err(e) => panic!("store did not recover: {e}"),
        }
    };
    assert!(v2 > v);
    // And its subscribers hear about it: a resync for the lost connection or the new change.
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
    assert!(
        matches!(got, Ok(Ok(_))),
        "no notice after reconnect: {got:?}"
    );
}

/// A change notice a subscriber cannot read (from a newer or broken writer) makes every
/// subscriber read afresh: what it named is unknown, and a view fed by notices would otherwise
/// miss it.
#[tokio::test]
async fn an_unreadable_change_notice_is_a_resync() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let mut rx = s.subscribe();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg("flux:changes")
        .arg("not a notice")
        .query_async(&mut conn)
        .await
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("a notice within 10 s")
        .unwrap();
    assert!(got.is_resync(), "{got:?}");
}

#[tokio::test]
async fn unreachable_redis_is_a_clear_error() {
    let port = flux_core::testing::free_port();
    let started = std::time::Instant::now();
    let err = store::open(&format!("redis://127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[tokio::test]
async fn redis_without_appendfsync_always_is_refused_unless_relaxed() {
    let Some(server) = RedisServer::start_with(&["--appendfsync", "everysec"]) else {
        return;
    };
    let err = store::open(&server.url()).await.unwrap_err();
    assert!(matches!(err, StoreError::Misconfigured(_)), "{err:?}");
    assert!(err.to_string().contains("appendfsync everysec"), "{err}");
    let relaxed = store::open(&format!("{}?durability=relaxed", server.url()))
        .await
        .unwrap();
    put_new(relaxed.as_ref(), "acme", "x", b"1").await;
}

#[tokio::test]
async fn credentials_in_the_url_never_appear_in_errors() {
    let port = flux_core::testing::free_port();
    let err = store::open(&format!("redis://admin:hunter2@127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Redis refusing writes (out of memory): commits fail with Redis's reason and write nothing,
/// the store says why, and it recovers by itself once Redis accepts writes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_is_reported_and_recovered_without_restart() {
    let Some(server) = RedisServer::start() else {
        return;
    };
    let s = RedisStore::connect(&server.url()).await.unwrap();
    let k = |p: &str| Key::new("acme", p).unwrap();
    s.put(k("jobs/1"), b"one".to_vec(), Expect::Absent)
        .await
        .unwrap();
    let admin = redis::Client::open(server.url()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let config = |name: &'static str, value: &'static str| {
        redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone()
    };
    let _: () = config("maxmemory-policy", "noeviction")
        .query_async(&mut admin)
        .await
        .unwrap();
    let _: () = config("maxmemory", "1")
        .query_async(&mut admin)
        .await
        .unwrap();
    let err = s
        .put(k("jobs/2"), b"two".to_vec(), Expect::Absent)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(err.to_string().contains("OOM"), "the error says why: {err}");
    assert!(s.unwritable().is_some_and(|w| w.contains("OOM")));
    let _: () = config("maxmemory", "0")
        .query_async(&mut admin)
        .await
        .unwrap();
    wait_writable(&s).await;
    assert_eq!(
        s.get(&k("jobs/2")).await.unwrap(),
        None,
        "a refused write left a trace"
    );
    s.put(k("jobs/2"), b"two".to_vec(), Expect::Absent)
        .await
        .unwrap();
}
