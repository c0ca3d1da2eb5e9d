//! Resource exhaustion by authenticated callers: one tenant (or one token) holding a node's
//! request pools, streams that hide what they are, and slow bodies. Every hold is bounded in
//! count (a pool's size and one more) and in time (the client's 30 s timeout); all traffic is
//! on loopback.

use std::time::{Duration, Instant};

use flux_tests::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

const T: Duration = Duration::from_secs(20);

/// A job of `tenant` that stays queued (no agent is `nowhere`): waits and follows on it last.
async fn queued_job(d: &Fluxd, tenant: &str) -> String {
    let op = d.token(tenant, "operator", None).await;
    d.submit(
        &op,
        &json!({"command": "true", "node_id": "nowhere", "allow_unknown_node": true}),
    )
    .await
}

/// A body that announces 100 bytes, sends `{` and then nothing.
fn stalled_body() -> reqwest::Body {
    reqwest::Body::wrap_stream(
        futures::stream::once(async { Ok::<_, std::io::Error>("{") })
            .chain(futures::stream::pending()),
    )
}

/// Sends `rb` in a task. A refusal (429) ends the task with its status and body at once; an
/// admitted request is held open, its body read until it ends or the client times out.
fn hold(rb: reqwest::RequestBuilder) -> JoinHandle<(u16, Value)> {
    tokio::spawn(async move {
        match rb.send().await {
            Ok(r) if r.status() == 429 => (429, r.json().await.unwrap_or(Value::Null)),
            Ok(r) => {
                let s = r.status().as_u16();
                let _ = r.bytes().await;
                (s, Value::Null)
            }
            Err(_) => (0, Value::Null),
        }
    })
}

/// The header that carries an agent registration's session secret.
const SESSION: &str = "X-Flux-Session";

/// An agent token for `node` of `tenant`, registered, and the session its registration returned.
async fn registered(d: &Fluxd, tenant: &str, node: &str) -> (String, String) {
    let tok = d.token(tenant, "agent", Some(node)).await;
    let (s, v) = d.post("/v1/agent/register", &tok, &json!({})).await;
    assert_eq!(s, 200, "registering {node}: {v}");
    let session = v["session"].as_str().expect("a session").to_string();
    (tok, session)
}

/// Waits until one of `holders` was refused; returns the refusals. By then the pool holds all
/// it lets their tenant hold, and it keeps holding it (admitted holders last many seconds).
async fn first_refusals(holders: &mut Vec<JoinHandle<(u16, Value)>>) -> Vec<Value> {
    eventually("a refused holder", T, || async {
        holders.iter().any(|h| h.is_finished()).then_some(())
    })
    .await;
    let mut refusals = Vec::new();
    let mut i = 0;
    while i < holders.len() {
        if holders[i].is_finished() {
            let (s, v) = holders.remove(i).await.unwrap();
            assert_eq!(s, 429, "a holder ended with {s} {v}");
            refusals.push(v);
        } else {
            i += 1;
        }
    }
    refusals
}

fn abort(holders: Vec<JoinHandle<(u16, Value)>>) {
    for h in holders {
        h.abort();
    }
}

/// Follows whose query hides the word `true` from a raw-text match (`%74rue`, `fo%6Clow`) are
/// still follows: they are counted as long-polls, not as ordinary requests. Held from one
/// tenant up to its share, they leave every tenant's ordinary requests and every agent's
/// heartbeats alone, even with 4 ordinary requests per node.
#[tokio::test(flavor = "multi_thread")]
async fn follows_count_as_long_polls_whatever_their_query_text() {
    let d = Fluxd::start_args(&["--max-requests", "4", "--max-long-polls", "8"]).await;
    let job = queued_job(&d, "acme").await;
    let viewers = [
        d.token("acme", "viewer", None).await,
        d.token("acme", "viewer", None).await,
    ];
    let globex = d.token("globex", "viewer", None).await;
    let (agent, session) = registered(&d, "globex", "g1").await;

    let queries = [
        "follow=%74rue",
        "fo%6Clow=true",
        "follow=%74rue&format=jsonl",
        "%66ollow=%74rue",
    ];
    let mut held = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let path = format!("/v1/jobs/{job}/logs?{q}");
        let r = d.get_response(&path, &viewers[i % 2]).await;
        assert_eq!(r.status(), 200, "{path}");
        held.push(r);
    }
    // Four streams are open, as many as the node's ordinary requests.
    for _ in 0..3 {
        let (s, v) = d.get("/v1/jobs", &globex).await;
        assert_eq!(s, 200, "another tenant's request: {v}");
        let (s, v) = d.get("/v1/jobs", &viewers[0]).await;
        assert_eq!(s, 200, "the same tenant's request: {v}");
        let (s, v) = send(
            d.req(Method::POST, "/v1/agent/heartbeat", &agent)
                .header(SESSION, &session)
                .json(&json!({})),
        )
        .await;
        assert_eq!(s, 200, "an agent's heartbeat: {v}");
    }
    // They are counted where they belong: the tenant holds its share (4) of the long-polls.
    let third = d.token("acme", "viewer", None).await;
    let path = format!("/v1/jobs/{job}/logs?follow=%74rue");
    let (s, v) = d.get(&path, &third).await;
    assert_eq!(s, 429, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("tenant acme") && msg.contains("long-polls"),
        "{msg}"
    );
    drop(held);
}

/// One tenant that tries to fill the long-polls, the agents' task polls or the registrations
/// gets its share of each pool; another tenant still gets in to each.
#[tokio::test(flavor = "multi_thread")]
async fn one_tenant_filling_a_pool_leaves_other_tenants_room_in_it() {
    let pool = 4;
    let d = Fluxd::start_args(&[
        "--max-long-polls",
        &pool.to_string(),
        "--max-registrations",
        "2",
    ])
    .await;
    let acme_job = queued_job(&d, "acme").await;
    let globex_job = queued_job(&d, "globex").await;
    let globex = d.token("globex", "viewer", None).await;

    // Long-polls: follows from distinct acme tokens, one more than the whole pool.
    let mut holders = Vec::new();
    for _ in 0..=pool {
        let tok = d.token("acme", "viewer", None).await;
        let path = format!("/v1/jobs/{acme_job}/logs?follow=true");
        holders.push(hold(d.req(Method::GET, &path, &tok)));
    }
    let refusals = first_refusals(&mut holders).await;
    assert!(
        refusals
            .iter()
            .all(|v| error_message(v).contains("tenant acme")),
        "{refusals:?}"
    );
    let (s, v) = d
        .get(
            &format!("/v1/jobs/{globex_job}/wait?timeout_secs=1"),
            &globex,
        )
        .await;
    assert_eq!(s, 200, "another tenant's wait: {v}");
    let r = d.logs_response(&globex, &globex_job, "follow=true").await;
    assert_eq!(r.status(), 200, "another tenant's follow");
    drop(r);
    abort(holders);

    // Agent task polls: one more acme agent than the pool holds, each polling for 25 s.
    let mut holders = Vec::new();
    for i in 0..=pool {
        let (tok, session) = registered(&d, "acme", &format!("a{i}")).await;
        holders.push(hold(
            d.req(Method::GET, "/v1/agent/tasks?after=0&wait_secs=25", &tok)
                .header(SESSION, session),
        ));
    }
    let refusals = first_refusals(&mut holders).await;
    assert!(
        error_message(&refusals[0]).contains("tenant acme"),
        "{refusals:?}"
    );
    let (g1, g1_session) = registered(&d, "globex", "g1").await;
    let (s, v) = send(
        d.req(Method::GET, "/v1/agent/tasks?after=0&wait_secs=0", &g1)
            .header(SESSION, g1_session),
    )
    .await;
    assert_eq!(s, 200, "another tenant's agent poll: {v}");
    abort(holders);

    // Registrations: acme agents whose bodies never come, one more than the pool holds.
    let mut holders = Vec::new();
    for i in 0..3 {
        let tok = d.token("acme", "agent", Some(&format!("r{i}"))).await;
        let rb = d
            .req(Method::POST, "/v1/agent/register", &tok)
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(stalled_body());
        holders.push(hold(rb));
    }
    let refusals = first_refusals(&mut holders).await;
    assert!(
        error_message(&refusals[0]).contains("tenant acme"),
        "{refusals:?}"
    );
    let g2 = d.token("globex", "agent", Some("g2")).await;
    let (s, v) = d.post("/v1/agent/register", &g2, &json!({})).await;
    assert_eq!(s, 200, "another tenant's registration: {v}");
    abort(holders);
}

/// A body from a caller whose role the route does not allow is never waited for: the 403 (or
/// 401 without a token) comes at once, with the body still unsent.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_caller_is_answered_before_its_body_arrives() {
    let d = Fluxd::start().await;
    let (viewer, operator, agent) = d.role_tokens("acme").await;
    let tenant_admin = d.token("acme", "admin", None).await;
    let cases: Vec<(&str, &str, Option<&str>, u16)> = vec![
        ("POST", "/v1/jobs", Some(&viewer), 403),
        ("POST", "/v1/jobs", Some(&agent), 403),
        ("POST", "/v1/jobs", None, 401),
        ("POST", "/jobs", Some(&viewer), 403),
        ("POST", "/v1/agent/register", Some(&viewer), 403),
        ("POST", "/v1/agent/heartbeat", Some(&operator), 403),
        (
            "POST",
            "/v1/agent/attempts/j-x.1/output",
            Some(&viewer),
            403,
        ),
        ("POST", "/v1/tokens", Some(&operator), 403),
        ("POST", "/v1/tenants", Some(&tenant_admin), 403),
        ("PUT", "/v1/tenants/acme/quota", Some(&tenant_admin), 403),
        ("PUT", "/v1/states/s1", Some(&viewer), 403),
        ("POST", "/v1/backup/restore", Some(&tenant_admin), 403),
    ];
    let calls = cases.iter().map(|(m, path, tok, want)| {
        let mut rb = d
            .http
            .request(
                Method::from_bytes(m.as_bytes()).unwrap(),
                format!("{}{path}", d.url),
            )
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(stalled_body());
        if let Some(t) = tok {
            rb = rb.bearer_auth(t);
        }
        async move {
            let started = Instant::now();
            let r = tokio::time::timeout(Duration::from_secs(5), rb.send()).await;
            let status = match r {
                Ok(Ok(r)) => r.status().as_u16(),
                Ok(Err(e)) => panic!("{m} {path}: {e}"),
                Err(_) => panic!("{m} {path}: no answer within 5 s: the body was waited for"),
            };
            assert_eq!(status, *want, "{m} {path}");
            started.elapsed()
        }
    });
    let took = futures::future::join_all(calls).await;
    assert_eq!(took.len(), cases.len());
}

/// An allowed caller's body that does not arrive within `--body-read-timeout` is cut off with
/// 408 after about that long, and its permit comes back: two stalled bodies on a node of two
/// ordinary requests leave it serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_slow_body_is_cut_off_by_the_body_read_timeout() {
    let d = Fluxd::start_args(&["--body-read-timeout", "2s", "--max-requests", "2"]).await;
    let operators = [
        d.token("acme", "operator", None).await,
        d.token("globex", "operator", None).await,
    ];
    let started = Instant::now();
    let calls = operators.iter().map(|tok| {
        let rb = d
            .req(Method::POST, "/v1/jobs", tok)
            .header("content-type", "application/json")
            .header("content-length", "100")
            .body(stalled_body());
        async move {
            let r = tokio::time::timeout(Duration::from_secs(15), rb.send())
                .await
                .expect("an answer within 15 s")
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    });
    for (status, v) in futures::future::join_all(calls).await {
        assert_eq!(status, 408, "{v}");
        assert_eq!(v["error"]["code"], "body_timeout", "{v}");
        assert!(error_message(&v).contains("--body-read-timeout"), "{v}");
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(15),
        "cut off after {took:?}"
    );
    let (s, v) = d.get("/v1/jobs", &operators[0]).await;
    assert_eq!(s, 200, "{v}");
    // Nothing was submitted.
    assert_eq!(v.as_array().unwrap().len(), 0, "{v}");
}
