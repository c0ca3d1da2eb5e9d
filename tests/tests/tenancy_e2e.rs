//! Scheduler admission end to end: per-tenant quotas (queued, running, submit rate) answered
//! with 429 and Retry-After, priorities within a tenant, and a flooding tenant not holding up
//! another.

use std::time::{Duration, Instant};

use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

fn set_quota(d: &Fluxd, tenant: &str, args: &[&str]) -> String {
    let mut a = vec!["tenants", "quota", "set", tenant];
    a.extend_from_slice(args);
    ok(&d.fluxctl(&d.admin, &a)).unwrap()
}

/// The row of `tenant` in `fluxctl tenants list -o json`, if listed.
fn listed_tenant(d: &Fluxd, tenant: &str) -> Option<Value> {
    let out = d.fluxctl(&d.admin, &["tenants", "list", "-o", "json"]);
    let list = json_of(&out);
    list.as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant"] == tenant)
        .cloned()
}

async fn submit(d: &Fluxd, token: &str, body: Value) -> (u16, Value, Option<String>) {
    let r = d
        .req(reqwest::Method::POST, "/v1/jobs", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry)
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_and_rate_quotas_answer_429_and_change_nothing() {
    let d = Fluxd::start().await;
    let acme = d.token("acme", "operator", None).await;
    let acme_admin = d.token("acme", "admin", None).await;
    // Only admins of the cluster tenant set quotas.
    let out = d.fluxctl(
        &acme_admin,
        &["tenants", "quota", "set", "acme", "--max-queued", "99"],
    );
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    set_quota(&d, "acme", &["--max-queued", "3"]);

    for i in 0..3 {
        let (s, v, _) = submit(
            &d,
            &acme,
            json!({"command": format!("echo {i}"), "node_id": "away", "allow_unknown_node": true}),
        )
        .await;
        assert_eq!(s, 202, "{v}");
    }
    let (s, v, retry) = submit(
        &d,
        &acme,
        json!({"command": "echo 4", "node_id": "away", "allow_unknown_node": true}),
    )
    .await;
    assert_eq!(s, 429, "{v}");
    assert_eq!(v["error"]["code"], "quota_exceeded");
    assert!(retry.is_some_and(|r| r.parse::<u64>().unwrap() >= 1));
    assert_eq!(
        d.get("/v1/jobs", &acme).await.1.as_array().unwrap().len(),
        3
    );
    // Other tenants are not bound by acme's quota.
    let (s, _, _) = submit(
        &d,
        &d.admin,
        json!({"command": "true", "node_id": "away", "allow_unknown_node": true}),
    )
    .await;
    assert_eq!(s, 202);

    // A stale version is refused (412); the quota is visible to acme's admin.
    let q = d.get("/v1/tenants/acme/quota", &acme_admin).await.1;
    assert_eq!(q["quota"]["max_queued"], 3);
    let v = q["version"].as_u64().unwrap();
    let out = d.fluxctl(
        &d.admin,
        &[
            "tenants",
            "quota",
            "set",
            "acme",
            "--max-queued",
            "5",
            "--if-version",
            &(v + 1).to_string(),
        ],
    );
    assert!(stderr(&out).contains("412"), "{}", stderr(&out));

    // Submit rate: a burst of 2, then one per ten seconds.
    set_quota(&d, "acme", &["--submit-rate", "0.1", "--submit-burst", "2"]);
    let mut codes = Vec::new();
    for _ in 0..3 {
        let (s, _, retry) = submit(
            &d,
            &acme,
            json!({"command": "true", "node_id": "away", "allow_unknown_node": true}),
        )
        .await;
        codes.push((s, retry));
    }
    assert_eq!(codes[0].0, 202);
    assert_eq!(codes[1].0, 202);
    assert_eq!(codes[2].0, 429, "{codes:?}");
    assert!(
        codes[2]
            .1
            .as_deref()
            .is_some_and(|r| r.parse::<u64>().unwrap() >= 5),
        "{codes:?}"
    );

    let row = listed_tenant(&d, "acme").unwrap();
    assert_eq!(row["queued"], 5, "{row}");
    assert_eq!(row["quota"]["submit_per_sec"], 0.1);
    // A tenant admin sees only its own tenant.
    let own = d.get("/v1/tenants", &acme_admin).await.1;
    assert_eq!(own.as_array().unwrap().len(), 1);
}

/// With `max_running = 1` a tenant's jobs run one at a time even on an agent with free slots;
/// among queued jobs the higher priority starts first.
#[tokio::test(flavor = "multi_thread")]
async fn running_quota_and_priorities_order_the_work() {
    let (d, _a) = Fluxd::start_with_agent().await;
    set_quota(&d, "default", &["--max-running", "1"]);
    let (s, blocker, _) = submit(
        &d,
        &d.admin,
        json!({"command": "sleep 1", "node_id": "agent-1"}),
    )
    .await;
    assert_eq!(s, 202);
    let blocker = blocker["job_id"].as_str().unwrap().to_string();
    d.wait_job(&d.admin, &blocker, T, |j| j["status"] == "running")
        .await;
    let (_, low, _) = submit(
        &d,
        &d.admin,
        json!({"command": "sleep 0.2", "node_id": "agent-1", "priority": -50}),
    )
    .await;
    let (_, mid, _) = submit(
        &d,
        &d.admin,
        json!({"command": "sleep 0.2", "node_id": "agent-1"}),
    )
    .await;
    let (_, high, _) = submit(
        &d,
        &d.admin,
        json!({"command": "sleep 0.2", "node_id": "agent-1", "priority": 50}),
    )
    .await;
    let mut done = Vec::new();
    for id in [
        &blocker,
        low["job_id"].as_str().unwrap(),
        mid["job_id"].as_str().unwrap(),
        high["job_id"].as_str().unwrap(),
    ] {
        let j = d.wait_job(&d.admin, id, T, terminal).await;
        assert_eq!(j["status"], "succeeded", "{j}");
        done.push(j);
    }
    let at = |j: &Value, f: &str| j[f].as_u64().unwrap();
    // One at a time: every job started after the previous one (in start order) finished.
    let mut by_start = done.clone();
    by_start.sort_by_key(|j| at(j, "started_at"));
    for w in by_start.windows(2) {
        assert!(
            at(&w[1], "started_at") >= at(&w[0], "finished_at"),
            "overlap: {} and {}",
            w[0],
            w[1]
        );
    }
    // Priority order among the queued ones: high, then the default, then low.
    let order: Vec<i64> = by_start[1..]
        .iter()
        .map(|j| j["priority"].as_i64().unwrap_or(0))
        .collect();
    assert_eq!(order, vec![50, 0, -50]);
    let (s, v, _) = submit(&d, &d.admin, json!({"command": "true", "priority": 101})).await;
    assert_eq!(s, 422, "{v}");
}

/// A tenant with a large queue and nowhere to run it does not hold up another tenant: the
/// scheduler looks at a bounded number of each tenant's queued jobs per pass.
#[tokio::test(flavor = "multi_thread")]
async fn a_flooding_tenant_does_not_delay_another() {
    let d = Fluxd::start().await;
    let flood = d.token("flood", "operator", None).await;
    let small = d.token("small", "operator", None).await;
    let _a = d.agent("small", "small-1", &[]).await;
    // Unpinned jobs with no agent of their tenant: every pass would look at all of them.
    for i in 0..600 {
        let (s, _, _) = submit(&d, &flood, json!({"command": format!("echo {i}")})).await;
        assert_eq!(s, 202);
    }
    let started = Instant::now();
    let (s, job, _) = submit(&d, &small, json!({"command": "true"})).await;
    assert_eq!(s, 202);
    let j = d
        .wait_job(&small, job["job_id"].as_str().unwrap(), T, terminal)
        .await;
    assert_eq!(j["status"], "succeeded");
    let waited = Duration::from_millis(
        j["started_at"].as_u64().unwrap() - j["created_at"].as_u64().unwrap(),
    );
    assert!(
        waited < Duration::from_secs(3),
        "the small tenant waited {waited:?} (total {:?})",
        started.elapsed()
    );
}

/// Placement by labels: a selector job runs on one matching agent; a fan-out runs once on
/// every matching agent with a result each; no match for a fan-out creates nothing.
#[tokio::test(flavor = "multi_thread")]
async fn label_selectors_place_jobs_and_fan_out_reaches_every_match() {
    let d = Fluxd::start().await;
    let _w1 = d.agent("default", "web-1", &["role=web"]).await;
    let _w2 = d.agent("default", "web-2", &["role=web", "dc=eu"]).await;
    let _db = d.agent("default", "db-1", &["role=db"]).await;

    let (s, one, _) = submit(
        &d,
        &d.admin,
        json!({"command": "echo $FLUX_NODE_ID", "selector": {"role": "db"}}),
    )
    .await;
    assert_eq!(s, 202, "{one}");
    let j = d
        .wait_job(&d.admin, one["job_id"].as_str().unwrap(), T, terminal)
        .await;
    assert_eq!(j["agent"], "db-1");
    assert_eq!(
        d.logs(&d.admin, one["job_id"].as_str().unwrap()).await,
        "db-1\n"
    );

    let out = d.run_all(
        &d.admin,
        "role=web",
        &["--wait", "-o", "json", "echo on $FLUX_NODE_ID"],
    );
    let reply = json_of(&out);
    let mut ran: Vec<String> = reply["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            assert_eq!(j["status"], "succeeded", "{j}");
            assert_eq!(j["group"], reply["group"]);
            j["agent"].as_str().unwrap().to_string()
        })
        .collect();
    ran.sort();
    assert_eq!(ran, vec!["web-1", "web-2"]);
    let group = reply["group"].as_str().unwrap();
    let (_, listed) = d.get(&format!("/v1/jobs?group={group}"), &d.admin).await;
    assert_eq!(listed.as_array().unwrap().len(), 2);
    for j in reply["jobs"].as_array().unwrap() {
        let id = j["job_id"].as_str().unwrap();
        assert_eq!(
            d.logs(&d.admin, id).await,
            format!("on {}\n", j["agent"].as_str().unwrap())
        );
    }

    // A failing member makes the whole fan-out exit non-zero.
    let out = d.run_all(
        &d.admin,
        "role=web",
        &["--wait", "test $FLUX_NODE_ID = web-1"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));

    let before = d.count("/v1/jobs?limit=1000", &d.admin).await;
    let (s, v, _) = submit(
        &d,
        &d.admin,
        json!({"command": "true", "selector": {"role": "cache"}, "fan_out": true}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    let (s, _, _) = submit(
        &d,
        &d.admin,
        json!({"command": "true", "node_id": "web-1", "selector": {"role": "web"}}),
    )
    .await;
    assert_eq!(s, 422);
    let after = d.count("/v1/jobs?limit=1000", &d.admin).await;
    assert_eq!(before, after);
}

/// A registration storm: 200 agents registering at once against a node that takes 2 at a
/// time. The excess is answered 429 with Retry-After (never 5xx), and agents that back off and
/// retry all get in.
#[tokio::test(flavor = "multi_thread")]
async fn a_registration_storm_is_shed_with_429_and_everyone_gets_in_with_backoff() {
    let d = Fluxd::start_args(&["--max-registrations", "2"]).await;
    let auth = d.authenticator();
    let tokens: Vec<String> = (0..200)
        .map(|i| {
            auth.issue(
                &format!("sim-{i}"),
                "storm",
                flux_core::auth::Role::Agent,
                Duration::from_secs(600),
                Some(&format!("sim-{i}")),
            )
            .unwrap()
            .0
        })
        .collect();
    let deadline = Instant::now() + T;
    let mut tasks = Vec::new();
    for (i, tok) in tokens.into_iter().enumerate() {
        let (http, url) = (d.http.clone(), d.url.clone());
        tasks.push(tokio::spawn(async move {
            let mut shed = 0u32;
            loop {
                let r = http
                    .post(format!("{url}/v1/agent/register"))
                    .bearer_auth(&tok)
                    .json(&json!({"labels": {"sim": "yes"}}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                assert!(status < 500, "agent {i}: {status}");
                if status == 200 {
                    return shed;
                }
                assert_eq!(status, 429, "agent {i}");
                let retry: u64 = r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                shed += 1;
                assert!(Instant::now() < deadline, "agent {i} never got in");
                // Back off with jitter below the advised delay, as flux-agent does.
                let pause = flux_core::client::backoff(
                    shed,
                    Duration::from_millis(20),
                    Duration::from_millis(500),
                );
                tokio::time::sleep(pause).await;
            }
        }));
    }
    let mut shed_total = 0;
    for t in tasks {
        shed_total += t.await.unwrap();
    }
    assert!(
        shed_total > 0,
        "the storm was never shed: the limit did not apply"
    );
    let storm_admin = d.token("storm", "viewer", None).await;
    let agents = d.get("/v1/agents", &storm_admin).await.1;
    assert_eq!(agents.as_array().unwrap().len(), 200);
}

/// Admins of the cluster tenant create tenants (with a quota and a first admin token); the
/// tenant shows in `tenants list` before it has any object; nobody else may create one.
#[tokio::test(flavor = "multi_thread")]
async fn cluster_admins_create_tenants_with_a_first_admin_token() {
    let d = Fluxd::start().await;
    let out = d.fluxctl(
        &d.admin,
        &["tenants", "create", "newco", "--max-queued", "5"],
    );
    let token = ok(&out).unwrap().trim().to_string();
    let me = d.get("/v1/whoami", &token).await.1;
    assert_eq!(
        (me["tenant"].as_str(), me["role"].as_str()),
        (Some("newco"), Some("admin"))
    );
    let row = listed_tenant(&d, "newco");
    assert_eq!(row.expect("newco listed")["quota"]["max_queued"], 5);
    let out = d.fluxctl(&d.admin, &["tenants", "create", "newco"]);
    assert!(stderr(&out).contains("409"), "{}", stderr(&out));
    let out = d.fluxctl(&token, &["tenants", "create", "another"]);
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    let out = d.fluxctl(&d.admin, &["tenants", "create", "_hidden"]);
    assert!(stderr(&out).contains("422"), "{}", stderr(&out));
}

/// Signing-key rotation on real nodes: with `--signing-key new --signing-key old`, a token of
/// the old key still verifies and new tokens carry the new key's `kid`; once the old key is no
/// longer listed its tokens get 401 while the new key's keep working.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_out_signing_key_stops_verifying_only_when_it_is_no_longer_listed() {
    let keys = tempfile::tempdir().unwrap();
    let new_key = keys.path().join("new.json");
    let first = Fluxd::start().await;
    let old_key = first.data_dir().join("signing-key.json");
    let old_token = first.token("default", "operator", None).await;
    let kid_of = |t: &str| {
        flux_core::auth::peek_claims(t).expect("claims");
        let hdr = t.split('.').next().unwrap();
        use base64::Engine;
        let h: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(hdr)
                .unwrap(),
        )
        .unwrap();
        h["kid"].as_str().unwrap().to_string()
    };
    let old_kid = kid_of(&old_token);

    let arg = |p: &std::path::Path| p.display().to_string();
    let both = Fluxd::start_args(&[
        "--signing-key",
        &arg(&new_key),
        "--signing-key",
        &arg(&old_key),
    ])
    .await;
    let (s, who) = both.get("/v1/whoami", &old_token).await;
    assert_eq!(s, 200, "a listed old key still verifies: {who}");
    let new_token = both.token("default", "operator", None).await;
    let new_kid = flux_core::auth::SigningKey::load(&new_key).unwrap().kid;
    assert_eq!(kid_of(&new_token), new_kid);
    assert_ne!(new_kid, old_kid);

    let only_new = Fluxd::start_args(&["--signing-key", &arg(&new_key)]).await;
    let (s, v) = only_new.get("/v1/whoami", &old_token).await;
    assert_eq!(s, 401, "a removed key's token: {v}");
    assert_eq!(only_new.get("/v1/whoami", &new_token).await.0, 200);
    // A retired key that does not exist is a start-up error, not a made-up key.
    let out = std::process::Command::new(bin("fluxd"))
        .args(["--signing-key", &arg(&new_key), "--signing-key"])
        .arg(keys.path().join("missing.json"))
        .arg("--data-dir")
        .arg(keys.path().join("d"))
        .arg("--listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!keys.path().join("missing.json").exists());
}
