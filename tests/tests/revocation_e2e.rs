//! Token revocation with real processes: a token revoked on one node is refused there at once
//! and on another node of the cluster (Redis HA) within a second, and checking a token reads
//! nothing from the store (each node holds the revocations in memory).

use std::time::{Duration, Instant};

use flux_core::testing::{RedisServer, poll_until};
use flux_tests::*;
use serde_json::json;

const LEASE: [&str; 6] = flux_core::testing::FAST_LEASE_ARGS;

#[tokio::test(flavor = "multi_thread")]
async fn a_token_revoked_on_one_node_is_refused_on_another_within_a_second() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let a = Fluxd::start_with(FluxdOpts::on_store(&url, &LEASE)).await;
    let b = Fluxd::start_with(FluxdOpts::peer_of(&a, &url, &LEASE)).await;

    let token = a.token("default", "viewer", None).await;
    for node in [&a, &b] {
        let (status, v) = node.get("/v1/whoami", &token).await;
        assert_eq!(status, 200, "{v}");
    }
    let (status, v) = a
        .post("/v1/tokens/revoke", &a.admin, &json!({"token": token}))
        .await;
    assert_eq!(status, 200, "{v}");
    let revoked_at = Instant::now();

    // The node that revoked it refuses it at once.
    let (status, v) = a.get("/v1/whoami", &token).await;
    assert_eq!(status, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );

    // The other node within a second.
    let refused = poll_until(
        Duration::from_millis(20),
        Duration::from_secs(1),
        || async { (b.get("/v1/whoami", &token).await.0 == 401).then_some(()) },
    )
    .await;
    assert!(
        refused.is_some(),
        "node B still accepted the token {:?} after it was revoked on node A",
        revoked_at.elapsed()
    );
    let (_, v) = b.get("/v1/whoami", &token).await;
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    // Other tokens are unaffected.
    let (status, _) = b.get("/v1/whoami", &b.admin).await;
    assert_eq!(status, 200);
    drop(redis);
}

/// Many authenticated requests that read nothing else (`whoami`) make (almost) no store reads:
/// the token check is answered from memory. Before, each made one (the revocation look-up).
#[tokio::test(flavor = "multi_thread")]
async fn checking_a_token_reads_nothing_from_the_store() {
    let d = Fluxd::start().await;
    let token = d.token("default", "viewer", None).await;
    // A revocation in the store, so the memory holds something to look through.
    let doomed = d.token("default", "viewer", None).await;
    let (status, v) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": doomed}))
        .await;
    assert_eq!(status, 200, "{v}");

    const N: usize = 200;
    let before = d.store_gets().await;
    for _ in 0..N {
        let (status, v) = d.get("/v1/whoami", &token).await;
        assert_eq!(status, 200, "{v}");
    }
    for _ in 0..N / 4 {
        let (status, _) = d.get("/v1/whoami", &doomed).await;
        assert_eq!(status, 401);
    }
    let reads = d.store_gets().await - before;
    // Background work (the leader's passes, the node record) reads a little meanwhile; one
    // read per request would be at least N + N/4.
    assert!(
        reads < (N / 4) as f64,
        "{reads} store reads for {} token checks",
        N + N / 4
    );
}
