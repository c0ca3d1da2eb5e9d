//! The audit log end to end: mutating calls recorded on a hash chain, read and verified with
//! fluxctl, and a record edited directly in the (real Redis) store caught by `fluxctl audit
//! verify` and by the leader's periodic check (`flux_integrity_mismatch_total`).

use std::time::Duration;

use flux_core::store::{self, Expect, Key};
use flux_core::testing::RedisServer;
use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn mutating_calls_are_chained_and_tampering_is_caught() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let d = Fluxd::start_with(FluxdOpts {
        args: [
            "--store",
            redis.url().as_str(),
            "--audit-verify-every",
            "200ms",
        ]
        .map(String::from)
        .to_vec(),
        ..FluxdOpts::default()
    })
    .await;
    let (s, _) = d
        .post(
            "/jobs",
            &d.admin,
            &json!({"command": "true", "node_id": "nowhere"}),
        )
        .await;
    assert_eq!(s, 202);
    let acme_admin = d.token("acme", "admin", None).await;
    let (s, _) = send(
        d.req(reqwest::Method::PUT, "/v1/states/motd", &d.admin).json(
            &json!({"name": "motd", "targets": {"agents": ["x"]}, "check": "true", "apply": "true"}),
        ),
    )
    .await;
    assert_eq!(s, 201);
    // Reads and failed calls are not recorded.
    assert_eq!(d.get("/v1/jobs", &d.admin).await.0, 200);
    let (s, _) = d.post("/v1/jobs", &d.admin, &json!({"command": ""})).await;
    assert_eq!(s, 422);

    let out = d.fluxctl(&d.admin, &["audit", "log", "-o", "json"]);
    let recs: Value = serde_json::from_str(&ok(&out).unwrap()).unwrap();
    let actions: Vec<&str> = recs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        vec!["POST /jobs", "POST /v1/tokens", "PUT /v1/states/{name}"],
        "{recs}"
    );
    let put = &recs[2];
    assert_eq!(put["object"], "/v1/states/motd");
    assert!(put["version"].as_u64().is_some(), "{put}");
    assert_eq!(recs[1]["prev_hash"], recs[0]["hash"]);
    assert!(
        !recs.to_string().contains("eyJ"),
        "a token reached the audit log"
    );

    let out = d.fluxctl(&d.admin, &["audit", "verify"]);
    assert!(ok(&out).unwrap().contains("default: ok, 3 records"));
    // The acme admin sees acme's (empty) trail only.
    let (s, v) = d.get("/v1/audit", &acme_admin).await;
    assert_eq!((s, v.as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(d.get("/v1/audit?tenant=default", &acme_admin).await.0, 404);
    let operator = d.token("default", "operator", None).await;
    assert_eq!(d.get("/v1/audit", &operator).await.0, 403);
    // A few integrity checks have passed without a mismatch.
    eventually("two integrity checks", T, || async {
        (d.metric("flux_integrity_checks_total").await? >= 2.0).then_some(())
    })
    .await;
    assert_eq!(d.metric("flux_integrity_mismatch_total").await, Some(0.0));

    // Someone with access to Redis rewrites record 2's actor.
    let direct = store::open(&redis.url()).await.unwrap();
    let k = Key::new("default", "audit/0000000000000002").unwrap();
    let mut rec: Value =
        serde_json::from_slice(&direct.get(&k).await.unwrap().unwrap().value).unwrap();
    rec["actor"] = json!("someone-else");
    direct
        .put(k, serde_json::to_vec(&rec).unwrap(), Expect::Any)
        .await
        .unwrap();

    let out = d.fluxctl(&d.admin, &["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("record 2 was altered"),
        "{}",
        stdout(&out)
    );
    eventually("the periodic check to count the mismatch", T, || async {
        (d.metric("flux_integrity_mismatch_total").await? >= 1.0).then_some(())
    })
    .await;
    assert!(
        d.proc
            .log_text()
            .contains("audit log integrity check failed")
    );
}
