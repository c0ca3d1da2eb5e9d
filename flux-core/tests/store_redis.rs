//! The store conformance suite and durability checks against a real `redis-server`.

use std::time::Duration;

use flux_core::store::conformance::Fixture;
use flux_core::store::redis::RedisStore;
use flux_core::store::{self, Expect, Key, Store, StoreError};
use flux_core::testing::RedisServer;

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
        let k = Key::new("acme", format!("jobs/{i:05}")).unwrap();
        versions.push(
            s.put(k, format!("p{i}").into_bytes(), Expect::Absent)
                .await
                .unwrap(),
        );
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
        let k = Key::new("acme", format!("jobs/{i:05}")).unwrap();
        let got = s
            .get(&k)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged write {i} lost"));
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
    relaxed
        .put(
            Key::new("acme", "x").unwrap(),
            b"1".to_vec(),
            Expect::Absent,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn credentials_in_the_url_never_appear_in_errors() {
    let port = flux_core::testing::free_port();
    let err = store::open(&format!("redis://admin:hunter2@127.0.0.1:{port}/0"))
        .await
        .unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}
