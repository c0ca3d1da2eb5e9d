//! Every route against every kind of bad request: no token, garbage, expired, forged, the wrong
//! role, another tenant, malformed, oversized and unknown-field bodies. Not one may succeed,
//! none may answer 5xx, and nothing may change.

use std::time::Duration;

use flux_core::auth::Role;
use flux_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

struct Route {
    method: Method,
    path: String,
    /// A valid body, when the route takes one.
    body: Option<Value>,
    /// Who may call it successfully (anything less must be refused).
    needs: Need,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Need {
    Viewer,
    Operator,
    Admin,
    ClusterAdmin,
    Agent,
    /// An enrollment token.
    Enroll,
}

fn routes(job: &str, state: &str) -> Vec<Route> {
    let r = |method: Method, path: &str, body: Option<Value>, needs: Need| Route {
        method,
        path: path.to_string(),
        body,
        needs,
    };
    let spec =
        json!({"name": state, "targets": {"agents": ["a1"]}, "check": "true", "apply": "true"});
    let schedule = json!({"name": "sc1", "cron": "@daily", "paused": true, "what": {"job": {
        "command": "true", "node_id": "a1", "allow_unknown_node": true}}});
    vec![
        r(
            Method::POST,
            "/jobs",
            Some(json!({"command": "true", "node_id": "a1", "allow_unknown_node": true})),
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/jobs",
            Some(json!({"command": "true"})),
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/jobs/run?timeout_secs=1",
            Some(json!({"command": "true"})),
            Need::Operator,
        ),
        r(Method::GET, "/v1/jobs", None, Need::Viewer),
        r(Method::GET, &format!("/v1/jobs/{job}"), None, Need::Viewer),
        r(
            Method::GET,
            &format!("/v1/jobs/{job}/attempts"),
            None,
            Need::Viewer,
        ),
        r(
            Method::GET,
            &format!("/v1/jobs/{job}/logs"),
            None,
            Need::Viewer,
        ),
        r(
            Method::GET,
            &format!("/v1/jobs/{job}/wait?timeout_secs=1"),
            None,
            Need::Viewer,
        ),
        r(
            Method::POST,
            &format!("/v1/jobs/{job}/cancel"),
            None,
            Need::Operator,
        ),
        r(Method::GET, "/v1/agents", None, Need::Viewer),
        r(Method::GET, "/v1/agents/a1", None, Need::Viewer),
        r(
            Method::GET,
            "/v1/agents?selector=role%3Dweb",
            None,
            Need::Viewer,
        ),
        r(
            Method::POST,
            "/v1/agents/a1/labels",
            Some(json!({"set": {"rack": "r1"}})),
            Need::Admin,
        ),
        r(
            Method::POST,
            "/v1/tokens",
            Some(json!({"role": "viewer"})),
            Need::Admin,
        ),
        r(
            Method::POST,
            "/v1/tokens/revoke",
            Some(json!({"jti": "nope"})),
            Need::Admin,
        ),
        r(Method::GET, "/v1/status", None, Need::Viewer),
        // Cluster-wide figures: a read token of the cluster tenant (another tenant's is refused
        // in abuse_server.rs).
        r(Method::GET, "/metrics", None, Need::Viewer),
        r(
            Method::POST,
            "/v1/agent/register",
            Some(json!({})),
            Need::Agent,
        ),
        r(
            Method::POST,
            "/v1/agent/heartbeat",
            Some(json!({})),
            Need::Agent,
        ),
        r(
            Method::GET,
            "/v1/agent/tasks?after=0&wait_secs=0",
            None,
            Need::Agent,
        ),
        r(
            Method::POST,
            &format!("/v1/agent/attempts/{job}.1/start"),
            Some(json!({})),
            Need::Agent,
        ),
        r(
            Method::POST,
            &format!("/v1/agent/attempts/{job}.1/output"),
            Some(json!({"seq": 0, "stream": "stdout", "data": "x"})),
            Need::Agent,
        ),
        r(
            Method::POST,
            &format!("/v1/agent/attempts/{job}.1/result"),
            Some(json!({"outcome": "exited", "exit_code": 0})),
            Need::Agent,
        ),
        r(Method::GET, "/v1/schedules", None, Need::Viewer),
        r(
            Method::POST,
            "/v1/schedules",
            Some(schedule.clone()),
            Need::Operator,
        ),
        r(Method::GET, "/v1/schedules/sc1", None, Need::Viewer),
        r(
            Method::PUT,
            "/v1/schedules/sc1",
            Some(schedule),
            Need::Operator,
        ),
        r(Method::DELETE, "/v1/schedules/sc1", None, Need::Operator),
        r(
            Method::POST,
            "/v1/schedules/sc1/pause",
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/schedules/sc1/resume",
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/schedules/sc1/trigger",
            None,
            Need::Operator,
        ),
        r(Method::GET, "/v1/states", None, Need::Viewer),
        r(
            Method::POST,
            "/v1/states",
            Some(json!({"states": [spec.clone()], "dry_run": false})),
            Need::Operator,
        ),
        r(
            Method::GET,
            &format!("/v1/states/{state}"),
            None,
            Need::Viewer,
        ),
        r(
            Method::PUT,
            &format!("/v1/states/{state}"),
            Some(spec),
            Need::Operator,
        ),
        r(
            Method::DELETE,
            &format!("/v1/states/{state}"),
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            &format!("/v1/states/{state}/resume"),
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/states",
            Some(json!({"node_id": "a1", "check_cmd": "true", "apply_cmd": "true"})),
            Need::Operator,
        ),
        r(Method::GET, "/v1/events?follow=false", None, Need::Viewer),
        r(Method::GET, "/v1/webhooks", None, Need::Admin),
        r(
            Method::POST,
            "/v1/webhooks",
            Some(json!({"name": "w1", "url": "https://hooks.example.com/x"})),
            Need::Admin,
        ),
        r(Method::GET, "/v1/audit", None, Need::Admin),
        r(Method::GET, "/v1/audit/verify", None, Need::Admin),
        r(Method::POST, "/v1/audit/export?before=1", None, Need::Admin),
        r(
            Method::POST,
            "/v1/audit/verify-file",
            Some(json!({})),
            Need::Admin,
        ),
        r(Method::GET, "/v1/tenants", None, Need::Admin),
        r(
            Method::POST,
            "/v1/tenants",
            Some(json!({"name": "fresh"})),
            Need::ClusterAdmin,
        ),
        r(Method::GET, "/v1/tenants/default/quota", None, Need::Admin),
        r(
            Method::PUT,
            "/v1/tenants/default/quota",
            Some(json!({"max_queued": 10})),
            Need::ClusterAdmin,
        ),
        r(
            Method::POST,
            "/v1/rollouts",
            Some(json!({"command": "true", "nodes": ["a1"], "max_concurrency": "10%"})),
            Need::Operator,
        ),
        r(Method::GET, "/v1/rollouts", None, Need::Viewer),
        r(Method::GET, "/v1/rollouts/r-none", None, Need::Viewer),
        r(
            Method::POST,
            "/v1/rollouts/r-none/pause",
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/rollouts/r-none/resume",
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/rollouts/r-none/cancel",
            None,
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/rollouts/r-none/retry",
            None,
            Need::Operator,
        ),
        r(Method::GET, "/v1/backup", None, Need::ClusterAdmin),
        r(
            Method::POST,
            "/v1/backup/restore",
            Some(json!({})),
            Need::ClusterAdmin,
        ),
        r(
            Method::POST,
            "/v1/backup/verify",
            Some(json!({})),
            Need::ClusterAdmin,
        ),
        r(Method::POST, "/v1/agent/renew", None, Need::Agent),
        r(
            Method::POST,
            "/v1/enroll",
            Some(json!({"node_id": "e1"})),
            Need::Enroll,
        ),
        r(Method::POST, "/v1/agents/a1/drain", None, Need::Operator),
        r(Method::POST, "/v1/agents/a1/uncordon", None, Need::Operator),
        // Last: it ends the agent token the routes above use.
        r(Method::POST, "/v1/agents/a1/revoke", None, Need::Admin),
    ]
}

/// What the store holds that a refused request could have changed.
async fn fingerprint(d: &Fluxd) -> (usize, usize, u64, usize) {
    let jobs = d.get("/v1/jobs?limit=1000", &d.admin).await.1;
    let states = d.get("/v1/states", &d.admin).await.1;
    let audit = d.get("/v1/audit/verify", &d.admin).await.1;
    let agents = d.get("/v1/agents", &d.admin).await.1;
    (
        jobs.as_array().map_or(0, Vec::len),
        states.as_array().map_or(0, Vec::len),
        audit[0]["records"].as_u64().unwrap_or(0),
        agents.as_array().map_or(0, Vec::len),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_refuses_every_bad_request_without_5xx_or_effect() {
    let d = Fluxd::start().await;
    let job = d
        .submit(
            &d.admin,
            &json!({"command": "true", "node_id": "a1", "allow_unknown_node": true}),
        )
        .await;
    let (s, _) = send(d.req(Method::PUT, "/v1/states/s1", &d.admin).json(
        &json!({"name": "s1", "targets": {"agents": ["a1"]}, "check": "true", "apply": "true"}),
    ))
    .await;
    assert_eq!(s, 201);
    d.admin_post_expect(
        "/v1/schedules",
        &json!({"name": "sc1", "cron": "@daily", "paused": true, "what": {"job": {
            "command": "true", "node_id": "a1", "allow_unknown_node": true}}}),
        201,
    )
    .await;

    // Identities that must get nowhere, or only as far as their role allows.
    let auth = d.authenticator();
    let (_, claims) = auth
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap();
    let expired = expired_token(&auth, &claims);
    let forged = forged_admin_token(&d.signing_key());
    let (viewer, operator, agent) = d.role_tokens("default").await;
    let tenant_admin = d.token("acme", "admin", None).await;
    let acme_agent = d.token("acme", "agent", Some("a1")).await;
    let enroll = enroll_token(&d, "default", 5).await;

    let before = fingerprint(&d).await;
    let mut tried = 0;
    let mut refusals = std::collections::BTreeMap::<u16, usize>::new();
    let mut check = |what: String, status: u16| {
        tried += 1;
        *refusals.entry(status).or_default() += 1;
        assert!(
            !(200..300).contains(&status) && status < 500,
            "{what} answered {status}"
        );
    };
    for r in routes(&job, "s1") {
        let call = |token: Option<&str>, body: Option<reqwest::Body>, ctype: Option<&str>| {
            let mut rb = d
                .http
                .request(r.method.clone(), format!("{}{}", d.url, r.path));
            if let Some(t) = token {
                rb = rb.bearer_auth(t);
            }
            if let Some(c) = ctype {
                rb = rb.header("content-type", c);
            }
            if let Some(b) = body {
                rb = rb.body(b);
            }
            async move { rb.send().await.expect("request").status().as_u16() }
        };
        let ct = r.body.as_ref().map(|_| "application/json");
        let id = format!("{} {}", r.method, r.path);

        // No token, garbage, expired, forged: 401 whatever the body.
        for (name, tok) in [
            ("no token", None),
            ("garbage", Some("not.a.token")),
            ("expired", Some(expired.as_str())),
            ("forged", Some(forged.as_str())),
        ] {
            let b = r.body.as_ref().map(|b| reqwest::Body::from(b.to_string()));
            let s = call(tok, b, ct).await;
            assert_eq!(s, 401, "{id} with {name}");
            check(format!("{id} with {name}"), s);
        }
        // Roles below what the route needs.
        let weaker: Vec<(&str, &str)> = match r.needs {
            Need::Viewer => vec![("agent", agent.as_str())],
            Need::Operator => vec![("viewer", viewer.as_str()), ("agent", agent.as_str())],
            Need::Admin => vec![("operator", operator.as_str()), ("agent", agent.as_str())],
            Need::ClusterAdmin => vec![
                ("operator", operator.as_str()),
                ("another tenant's admin", tenant_admin.as_str()),
            ],
            Need::Agent => vec![("viewer", viewer.as_str()), ("admin", d.admin.as_str())],
            Need::Enroll => vec![("admin", d.admin.as_str()), ("agent", agent.as_str())],
        };
        for (name, tok) in weaker {
            let b = r.body.as_ref().map(|b| reqwest::Body::from(b.to_string()));
            let s = call(Some(tok), b, ct).await;
            check(format!("{id} as {name}"), s);
        }
        // Another tenant naming this tenant's objects sees nothing (404), never them.
        // (A PUT by another tenant would create that tenant's own state: not a refusal.)
        let names_object =
            (r.path.contains(&job) || r.path.contains("/s1")) && r.method != Method::PUT;
        if names_object {
            let tok = if r.needs == Need::Agent {
                acme_agent.as_str()
            } else {
                tenant_admin.as_str()
            };
            let b = r.body.as_ref().map(|b| reqwest::Body::from(b.to_string()));
            let s = call(Some(tok), b, ct).await;
            assert!(s == 404 || s == 410, "{id} by another tenant: {s}");
            check(format!("{id} by another tenant"), s);
        }
        // Bad bodies, with the right identity.
        if r.body.is_some() {
            let good = match r.needs {
                Need::Agent => agent.as_str(),
                Need::Enroll => enroll.as_str(),
                _ => d.admin.as_str(),
            };
            let mut bad_bodies: Vec<(&str, String, &str)> = vec![
                (
                    "malformed JSON",
                    "{\"command\": ".to_string(),
                    "application/json",
                ),
                ("a JSON array", "[1,2,3]".to_string(), "application/json"),
                ("not JSON", "command=true".to_string(), "text/plain"),
                (
                    "oversized",
                    format!("{{\"command\": \"{}\"}}", "x".repeat(2 << 20)),
                    "application/json",
                ),
            ];
            if let Some(Value::Object(m)) = &r.body {
                let mut with_extra = m.clone();
                with_extra.insert("is_admin".into(), json!(true));
                bad_bodies.push((
                    "an unknown field",
                    Value::Object(with_extra).to_string(),
                    "application/json",
                ));
            }
            for (name, body, ctype) in bad_bodies {
                if r.path.contains("/backup/") && name == "oversized" {
                    continue; // its limit is far larger; a bad body is refused anyway
                }
                let s = call(Some(good), Some(reqwest::Body::from(body)), Some(ctype)).await;
                check(format!("{id} with {name}"), s);
            }
        }
    }
    assert!(tried > 200, "only {tried} requests");
    let after = fingerprint(&d).await;
    assert_eq!(
        after, before,
        "a refused request changed something ({refusals:?})"
    );
    assert!(before.2 > 0, "the fingerprint reads nothing: {before:?}");

    // Positive control: with the right identity every route exists and lets the caller in, so
    // the refusals above were about the request, not a mistyped route or body.
    let agent_ok = {
        let (s, v) = send(
            d.req(Method::POST, "/v1/agent/register", &agent)
                .json(&json!({})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        agent.clone()
    };
    for r in routes(&job, "s1") {
        if r.path.contains("/backup/restore") {
            continue; // would replace the store; its refusals are covered in backup_e2e
        }
        let tok = match r.needs {
            Need::Agent => agent_ok.as_str(),
            Need::Enroll => enroll.as_str(),
            _ => d.admin.as_str(),
        };
        let mut rb = d
            .http
            .request(r.method.clone(), format!("{}{}", d.url, r.path))
            .bearer_auth(tok);
        if let Some(b) = &r.body {
            rb = rb.json(b);
        }
        let resp = rb.send().await.unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status < 500
                && ![401, 403, 405, 415].contains(&status)
                && !(status == 404 && body["error"]["message"] == "no such route"),
            "{} {} with the right identity: {status} {body}",
            r.method,
            r.path
        );
        // `{}` is not a backup nor an audit export: verify lets the admin in and refuses the
        // body (422).
        if r.needs != Need::Agent
            && !r.path.contains("/attempts/")
            && !r.path.contains("/backup/verify")
            && !r.path.contains("/audit/verify-file")
        {
            assert!(
                (200..300).contains(&status) || status == 409 || status == 404,
                "{} {}: {status} {body}",
                r.method,
                r.path
            );
        }
    }
    // Another tenant's quota is not visible to a tenant admin.
    assert_eq!(
        d.get("/v1/tenants/default/quota", &tenant_admin).await.0,
        404
    );
}

/// Every string field of job submit, state, token and tenant requests (and the job listing's
/// query) is bounded: an over-long or malformed value is answered 422 with a message naming the
/// field, and nothing changes. The system's own token subjects cannot be minted, and a tenant
/// cannot grow past its `max_states`.
#[tokio::test(flavor = "multi_thread")]
async fn every_overlong_request_field_is_refused_422_naming_it() {
    let d = Fluxd::start().await;
    let (s, _) = send(d.req(Method::PUT, "/v1/states/s1", &d.admin).json(
        &json!({"name": "s1", "targets": {"agents": ["a1"]}, "check": "true", "apply": "true"}),
    ))
    .await;
    assert_eq!(s, 201);
    let long = "x".repeat(200);
    let long_env = "X".repeat(200);
    let huge = "x".repeat(70 * 1024);
    let state = |f: &dyn Fn(&mut Value)| {
        let mut v =
            json!({"name": "s9", "targets": {"agents": ["a1"]}, "check": "true", "apply": "true"});
        f(&mut v);
        v
    };
    let job = |f: &dyn Fn(&mut Value)| {
        let mut v = json!({"command": "true", "node_id": "a1", "allow_unknown_node": true});
        f(&mut v);
        v
    };
    let p = Method::POST;
    let cases: Vec<(&str, Method, String, Option<Value>)> = vec![
        (
            "command",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["command"] = json!(huge))),
        ),
        (
            "argv",
            p.clone(),
            "/v1/jobs".into(),
            Some(json!({"argv": [huge]})),
        ),
        (
            "argv",
            p.clone(),
            "/v1/jobs".into(),
            Some(json!({"argv": vec!["a"; 5000]})),
        ),
        (
            "node_id",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["node_id"] = json!(long))),
        ),
        (
            "node_id",
            p.clone(),
            "/jobs".into(),
            Some(job(&|v| v["node_id"] = json!(long))),
        ),
        (
            "env",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["env"] = json!({&long_env: "v"}))),
        ),
        (
            "env",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["env"] = json!({"FOO": huge}))),
        ),
        (
            "secret_env",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["secret_env"] = json!({&long_env: "secret"}))),
        ),
        (
            "secret_env",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["secret_env"] = json!({"S": huge}))),
        ),
        (
            "workdir",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["workdir"] = json!(format!("/{huge}")))),
        ),
        (
            "selector",
            p.clone(),
            "/v1/jobs".into(),
            Some(json!({"command": "true", "selector": {&long: "web"}})),
        ),
        (
            "selector",
            p.clone(),
            "/v1/jobs".into(),
            Some(json!({"command": "true", "selector": {"role": "x".repeat(300)}})),
        ),
        (
            "idempotency_key",
            p.clone(),
            "/v1/jobs".into(),
            Some(job(&|v| v["idempotency_key"] = json!(long))),
        ),
        (
            "name",
            Method::PUT,
            format!("/v1/states/{long}"),
            Some(state(&|v| v["name"] = json!(long))),
        ),
        (
            "name",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["name"] = json!(long))),
        ),
        (
            "targets",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["targets"] = json!({"agents": [long]}))),
        ),
        (
            "targets",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["targets"] = json!({"labels": {&long: "web"}}))),
        ),
        (
            "targets",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| {
                v["targets"] = json!({"labels": {"role": "x".repeat(300)}})
            })),
        ),
        (
            "targets",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| {
                v["targets"] = json!({"selector": "fact.nope>1"})
            })),
        ),
        (
            "at byte 12",
            p.clone(),
            "/v1/jobs".into(),
            Some(json!({"command": "true", "selector": "role in (web"})),
        ),
        (
            "selector: at byte 7",
            Method::GET,
            "/v1/agents?selector=role%20in".into(),
            None,
        ),
        (
            "set",
            p.clone(),
            "/v1/agents/a1/labels".into(),
            Some(json!({"set": {&long: "v"}})),
        ),
        (
            "set.rack",
            p.clone(),
            "/v1/agents/a1/labels".into(),
            Some(json!({"set": {"rack": huge}})),
        ),
        (
            "remove",
            p.clone(),
            "/v1/agents/a1/labels".into(),
            Some(json!({"remove": [long]})),
        ),
        (
            "check",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["check"] = json!(huge))),
        ),
        (
            "apply",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["apply"] = json!(huge))),
        ),
        (
            "env",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["env"] = json!({&long_env: "v"}))),
        ),
        (
            "rollout.max_concurrency",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| {
                v["rollout"] = json!({"max_concurrency": "150%"})
            })),
        ),
        (
            "rollout.max_concurrency",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["rollout"] = json!({"max_concurrency": 0}))),
        ),
        (
            "rollout.max_errors",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| v["rollout"] = json!({"max_errors": "0%"}))),
        ),
        (
            "canary",
            Method::PUT,
            "/v1/states/s9".into(),
            Some(state(&|v| {
                v["rollout"] = json!({"max_concurrency": 1, "canary": 1})
            })),
        ),
        (
            "name",
            p.clone(),
            "/v1/states".into(),
            Some(json!({"states": [state(&|v| v["name"] = json!(long))]})),
        ),
        (
            "file",
            p.clone(),
            "/v1/states".into(),
            Some(json!({"toml": "", "file": "f".repeat(300)})),
        ),
        (
            "file",
            p.clone(),
            "/v1/states".into(),
            Some(json!({"toml": "", "file": "a\nb"})),
        ),
        (
            "expect",
            p.clone(),
            "/v1/states".into(),
            Some(json!({"states": [], "expect": {&long: 1}})),
        ),
        (
            "expect_schedules",
            p.clone(),
            "/v1/states".into(),
            Some(json!({"states": [], "schedules": [], "expect_schedules": {&long: 1}})),
        ),
        (
            "schedule[0].cron",
            p.clone(),
            "/v1/states".into(),
            Some(
                json!({"toml": "[[schedule]]\nname = \"x\"\ncron = \"61 * * * *\"\nwhat = { job = { command = \"true\" } }\n"}),
            ),
        ),
        (
            "schedule[0].what",
            p.clone(),
            "/v1/states".into(),
            Some(
                json!({"toml": format!("[[schedule]]\nname = \"x\"\ncron = \"@daily\"\nwhat = {{ job = {{ command = \"true\", secret_env = {{ T = \"{}\" }} }} }}\n", huge)}),
            ),
        ),
        (
            "what.job.secret_env",
            p.clone(),
            "/v1/schedules".into(),
            Some(json!({"name": "sx", "cron": "@daily", "what": {"job": {
                "command": "true", "secret_env": {"T": format!("hmac-sha256:{}", "0".repeat(64))}}}})),
        ),
        (
            "what.rollout",
            p.clone(),
            "/v1/schedules".into(),
            Some(json!({"name": "sx", "cron": "@daily", "what": {"rollout": {
                "command": "true", "selector": "role=web", "max_concurrency": long}}})),
        ),
        (
            "targets",
            p.clone(),
            "/states".into(),
            Some(json!({"node_id": long, "check_cmd": "true", "apply_cmd": "true"})),
        ),
        (
            "subject",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "operator", "subject": long})),
        ),
        (
            "subject",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "operator", "subject": "bootstrap-admin"})),
        ),
        (
            "subject",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "operator", "subject": "reconciler"})),
        ),
        (
            "subject",
            p.clone(),
            "/v1/tokens".into(),
            Some(
                json!({"role": "operator", "subject": "bootstrap-admin\n2026-12-01T19:30:00Z  INFO fluxd: forged"}),
            ),
        ),
        (
            "subject",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "agent", "node_id": "bootstrap-admin"})),
        ),
        (
            "node_id",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "agent", "node_id": long})),
        ),
        (
            "tenant",
            p.clone(),
            "/v1/tokens".into(),
            Some(json!({"role": "viewer", "tenant": long})),
        ),
        (
            "token",
            p.clone(),
            "/v1/tokens/revoke".into(),
            Some(json!({"token": "x".repeat(10_000)})),
        ),
        (
            "jti",
            p.clone(),
            "/v1/tokens/revoke".into(),
            Some(json!({"jti": long})),
        ),
        (
            "tenant",
            p.clone(),
            "/v1/tokens/revoke".into(),
            Some(json!({"jti": "abc", "tenant": long})),
        ),
        (
            "name",
            p.clone(),
            "/v1/tenants".into(),
            Some(json!({"name": long})),
        ),
        (
            "tenant",
            Method::PUT,
            format!("/v1/tenants/{long}/quota"),
            Some(json!({})),
        ),
        (
            "tenant",
            Method::GET,
            format!("/v1/tenants/{long}/quota"),
            None,
        ),
        (
            "max_states",
            Method::PUT,
            "/v1/tenants/acme/quota".into(),
            Some(json!({"max_states": 2_000_000})),
        ),
        (
            "job_retention_secs",
            Method::PUT,
            "/v1/tenants/acme/quota".into(),
            Some(json!({"job_retention_secs": 0})),
        ),
        (
            "job_retention_count",
            Method::PUT,
            "/v1/tenants/acme/quota".into(),
            Some(json!({"job_retention_count": 0})),
        ),
        (
            "node_id",
            Method::GET,
            format!("/v1/jobs?node_id={long}"),
            None,
        ),
        ("group", Method::GET, format!("/v1/jobs?group={long}"), None),
    ];
    let before = fingerprint(&d).await;
    for (field, method, path, body) in cases {
        let mut rb = d.req(method.clone(), &path, &d.admin);
        if let Some(b) = &body {
            rb = rb.json(b);
        }
        let (status, v) = send(rb).await;
        let msg = error_message(&v);
        let short: String = path.chars().take(60).collect();
        assert_eq!(status, 422, "{method} {short} ({field}): {v}");
        assert!(
            msg.contains(field),
            "{method} {short}: {msg:?} does not name {field}"
        );
        assert!(
            msg.len() < 1024 && !msg.contains('\n'),
            "{method} {short}: the refusal echoes the value ({} bytes)",
            msg.len()
        );
    }
    assert_eq!(
        fingerprint(&d).await,
        before,
        "a refused request changed something"
    );

    // max_states: the state that would pass the quota is refused 429 naming it; updates pass.
    let (s, v) = send(
        d.req(Method::PUT, "/v1/tenants/default/quota", &d.admin)
            .json(&json!({"max_states": 1})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let spec = |name: &str, check: &str| json!({"name": name, "targets": {"agents": ["a1"]}, "check": check, "apply": "true"});
    let (s, v) = send(
        d.req(Method::PUT, "/v1/states/s2", &d.admin)
            .json(&spec("s2", "true")),
    )
    .await;
    assert_eq!(s, 429, "{v}");
    assert!(error_message(&v).contains("max_states"), "{v}");
    d.admin_post_expect(
        "/v1/states",
        &json!({"states": [spec("s1", "true"), spec("s2", "true")]}),
        429,
    )
    .await;
    let (s, v) = send(
        d.req(Method::PUT, "/v1/states/s1", &d.admin)
            .json(&spec("s1", "false")),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(fingerprint(&d).await.1, 1);
}

/// Bad listing parameters: a limit out of 1..=1000 or not a number, a malformed cursor, one
/// made for another filter or another tenant, an unknown kind. Each is a 400 naming its
/// parameter, and changes nothing.
#[tokio::test(flavor = "multi_thread")]
async fn every_bad_listing_parameter_is_refused_400_naming_it() {
    let d = Fluxd::start().await;
    for _ in 0..3 {
        d.submit(
            &d.admin,
            &json!({"command": "true", "node_id": "a1", "allow_unknown_node": true}),
        )
        .await;
    }
    let acme = d.token("acme", "admin", None).await;
    let r = d
        .get_response("/v1/jobs?status=queued&limit=1", &d.admin)
        .await;
    assert_eq!(r.status(), 200);
    let cursor = header_text(&r, "x-flux-next-cursor")
        .expect("a first page of 3 jobs by 1 has a next cursor");
    // The cursor works with its own filter.
    let (s, page) = d
        .get(
            &format!("/v1/jobs?status=queued&limit=1&cursor={cursor}"),
            &d.admin,
        )
        .await;
    assert_eq!((s, page.as_array().map(Vec::len)), (200, Some(1)), "{page}");
    let before = fingerprint(&d).await;
    let long = "A".repeat(300);
    let cases: Vec<(&str, String, &str)> = vec![
        ("limit", "/v1/jobs?limit=0".into(), &d.admin),
        ("limit", "/v1/jobs?limit=1001".into(), &d.admin),
        ("limit", "/v1/jobs?limit=-1".into(), &d.admin),
        ("limit", "/v1/jobs?limit=many".into(), &d.admin),
        (
            "limit",
            "/v1/jobs?limit=99999999999999999999999".into(),
            &d.admin,
        ),
        ("cursor", "/v1/jobs?cursor=".into(), &d.admin),
        ("cursor", "/v1/jobs?cursor=!!!".into(), &d.admin),
        (
            "cursor",
            "/v1/jobs?cursor=bm90LWEtY3Vyc29y".into(),
            &d.admin,
        ),
        ("cursor", format!("/v1/jobs?cursor={long}"), &d.admin),
        ("cursor", "/v1/jobs?cursor=%00%0A".into(), &d.admin),
        // Made for status=queued: refused with another filter, or none.
        ("cursor", format!("/v1/jobs?cursor={cursor}"), &d.admin),
        (
            "cursor",
            format!("/v1/jobs?status=running&cursor={cursor}"),
            &d.admin,
        ),
        (
            "cursor",
            format!("/v1/jobs?status=queued&kind=user&cursor={cursor}"),
            &d.admin,
        ),
        // Made in another tenant.
        (
            "cursor",
            format!("/v1/jobs?status=queued&cursor={cursor}"),
            &acme,
        ),
        ("kind", "/v1/jobs?kind=robot".into(), &d.admin),
        ("kind", "/v1/jobs?kind=".into(), &d.admin),
    ];
    for (field, path, token) in cases {
        let (s, v) = d.get(&path, token).await;
        assert_eq!(s, 400, "{path}: {v}");
        let msg = error_message(&v);
        assert!(msg.contains(field), "{path}: {field} not named in {v}");
        assert!(
            msg.len() < 400,
            "{path}: the message echoes the input: {msg}"
        );
    }
    assert_eq!(
        fingerprint(&d).await,
        before,
        "a refused listing changed something"
    );
}

/// Refusals come before the body: every route that takes one, called without a token or by an
/// identity it refuses, with a body announced but never sent, is answered 401 or 403 at once.
#[tokio::test(flavor = "multi_thread")]
async fn every_body_route_refuses_before_reading_the_body() {
    use futures::StreamExt;
    let d = Fluxd::start().await;
    let (viewer, operator, agent) = d.role_tokens("default").await;
    let tenant_admin = d.token("acme", "admin", None).await;
    let mut calls = Vec::new();
    for r in routes("j-x", "s1") {
        if r.body.is_none() {
            continue;
        }
        let weaker: Vec<&str> = match r.needs {
            Need::Viewer => vec![&agent],
            // Viewers may dry-run an apply, so theirs is a body to read.
            Need::Operator if r.path == "/v1/states" => vec![&agent],
            Need::Operator => vec![&viewer, &agent],
            Need::Admin => vec![&operator, &agent],
            Need::ClusterAdmin => vec![&operator, &tenant_admin],
            Need::Agent => vec![&viewer, &d.admin],
            Need::Enroll => vec![&d.admin, &agent],
        };
        for tok in weaker.into_iter().map(Some).chain([None]) {
            let stalled = reqwest::Body::wrap_stream(
                futures::stream::once(async { Ok::<_, std::io::Error>("{") })
                    .chain(futures::stream::pending()),
            );
            let mut rb = d
                .http
                .request(r.method.clone(), format!("{}{}", d.url, r.path))
                .header("content-type", "application/json")
                .header("content-length", "100")
                .body(stalled);
            if let Some(t) = tok {
                rb = rb.bearer_auth(t);
            }
            let id = format!("{} {} (token: {})", r.method, r.path, tok.is_some());
            calls.push(async move {
                match tokio::time::timeout(Duration::from_secs(5), rb.send()).await {
                    Ok(Ok(resp)) => (id, resp.status().as_u16()),
                    Ok(Err(e)) => panic!("{id}: {e}"),
                    Err(_) => panic!("{id}: no answer within 5 s: the body was waited for"),
                }
            });
        }
    }
    let answers = futures::future::join_all(calls).await;
    assert!(answers.len() > 20, "only {} calls", answers.len());
    for (id, status) in answers {
        assert!(status == 401 || status == 403, "{id}: {status}");
    }
}

/// An enrollment token of `tenant` good for `uses` enrollments, made by the admin.
async fn enroll_token(d: &Fluxd, tenant: &str, uses: u32) -> String {
    let v = d
        .admin_post_expect(
            "/v1/tokens",
            &json!({"tenant": tenant, "role": "enroll", "uses": uses, "ttl_secs": 600}),
            201,
        )
        .await;
    v["token"].as_str().unwrap().to_string()
}

/// Enrollment, drain, revoke and pinned submissions refuse bad input naming the field, say why
/// an enrollment token is refused (expired, used up, revoked), keep to the caller's tenant, and
/// change nothing when they refuse.
#[tokio::test(flavor = "multi_thread")]
async fn enrollment_agent_admin_and_pinned_jobs_refuse_bad_input_naming_the_cause() {
    let d = Fluxd::start().await;
    // Token creation: uses, ttl, labels and node binding are checked.
    for (body, field) in [
        (json!({"role": "enroll", "uses": 0}), "uses"),
        (json!({"role": "enroll"}), "uses"),
        (json!({"role": "enroll", "uses": 100_001}), "uses"),
        (
            json!({"role": "enroll", "uses": 3, "ttl_secs": 40 * 24 * 3600}),
            "ttl",
        ),
        (
            json!({"role": "enroll", "uses": 3, "node_id": "n1"}),
            "node_id",
        ),
        (
            json!({"role": "enroll", "uses": 3, "labels": {"bad key": "v"}}),
            "labels",
        ),
        (
            json!({"role": "enroll", "uses": 3, "labels": {"k": ""}}),
            "labels",
        ),
        (json!({"role": "operator", "uses": 3}), "uses"),
    ] {
        let (s, v) = d.post("/v1/tokens", &d.admin, &body).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert!(error_message(&v).contains(field), "{body}: {v}");
    }
    let operator = d.token("default", "operator", None).await;
    d.post_expect(
        "/v1/tokens",
        &operator,
        &json!({"role": "enroll", "uses": 3}),
        403,
    )
    .await;

    let enroll = enroll_token(&d, "default", 1).await;
    let acme_admin = d.token("acme", "admin", None).await;
    let before = fingerprint(&d).await;
    // An enrollment token may only enroll; bad node ids are 422 naming node_id.
    let (s, _) = d.get("/v1/jobs", &enroll).await;
    assert_eq!(s, 403);
    for bad in ["", "a b", "_system", &"x".repeat(200)] {
        let (s, v) = d
            .post("/v1/enroll", &enroll, &json!({"node_id": bad}))
            .await;
        assert_eq!(s, 422, "{bad:?}: {v}");
        assert!(error_message(&v).contains("node_id"), "{v}");
    }
    d.post_expect("/v1/enroll", &enroll, &json!({"node": "n1"}), 422)
        .await;
    // A pinned job for a node nobody enrolled or registered as: 422 naming node_id.
    let v = d
        .admin_job_expect(&json!({"command": "true", "node_id": "ghost"}), 422)
        .await;
    assert!(
        error_message(&v).contains("node_id") && error_message(&v).contains("ghost"),
        "{v}"
    );
    d.admin_post_expect(
        "/jobs",
        &json!({"command": "true", "node_id": "ghost"}),
        422,
    )
    .await;
    // Drain, uncordon and revoke of an agent that does not exist (or is another tenant's).
    for verb in ["drain", "uncordon", "revoke"] {
        for tok in [&d.admin, &acme_admin] {
            let (s, v) = d
                .post(&format!("/v1/agents/nobody/{verb}"), tok, &json!({}))
                .await;
            assert_eq!(s, 404, "{verb}: {v}");
        }
    }
    assert_eq!(fingerprint(&d).await, before, "a refusal changed something");

    // Used up: 403 saying so; the one use went to the first enrollment.
    let (s, v) = d
        .post("/v1/enroll", &enroll, &json!({"node_id": "n1"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["claims"]["role"], "agent");
    assert_eq!(v["claims"]["node_id"], "n1");
    let (s, v) = d
        .post("/v1/enroll", &enroll, &json!({"node_id": "n2"}))
        .await;
    assert_eq!(s, 403, "{v}");
    assert!(error_message(&v).contains("used up"), "{v}");
    // Another tenant's admin cannot drain or revoke it.
    for verb in ["drain", "revoke"] {
        let (s, _) = d
            .post(&format!("/v1/agents/n1/{verb}"), &acme_admin, &json!({}))
            .await;
        assert_eq!(s, 404, "{verb}");
    }
    // Revoked: 401 saying so.
    let enroll2 = enroll_token(&d, "default", 5).await;
    let (s, _) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": enroll2}))
        .await;
    assert_eq!(s, 200);
    let (s, v) = d
        .post("/v1/enroll", &enroll2, &json!({"node_id": "n3"}))
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(
        error_message(&v).contains("enrollment token has been revoked"),
        "{v}"
    );
    // Expired: 401 saying so.
    let auth = d.authenticator();
    let (_, c) = auth
        .issue_enrollment(
            "e",
            "default",
            Duration::from_secs(60),
            5,
            Default::default(),
        )
        .unwrap();
    let expired = expired_token(&auth, &c);
    let (s, v) = d
        .post("/v1/enroll", &expired, &json!({"node_id": "n4"}))
        .await;
    assert_eq!(s, 401, "{v}");
    assert!(
        error_message(&v).contains("enrollment token has expired"),
        "{v}"
    );
    // An agent credential cannot be renewed by anyone else.
    d.admin_post_expect("/v1/agent/renew", &json!({}), 403)
        .await;
}

/// `GET /v1/events` refuses bad input before streaming, naming the parameter: a malformed
/// `since` (query or `Last-Event-ID`) 400, an unknown type or a wildcard matching none 422, a bad
/// selector 422, an overlong object 422, an unknown parameter 400; nothing is streamed and
/// nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn the_event_stream_refuses_bad_input_naming_it() {
    let d = Fluxd::start().await;
    let agent = d.token("default", "agent", Some("a1")).await;
    let before = fingerprint(&d).await;
    let long = "o".repeat(300);
    let cases: Vec<(u16, &str, String)> = vec![
        (400, "since", "/v1/events?since=abc".into()),
        (400, "since", "/v1/events?since=1.x".into()),
        (400, "since", "/v1/events?since=-4".into()),
        (
            400,
            "since",
            format!("/v1/events?since={}", "9".repeat(300)),
        ),
        (422, "type", "/v1/events?type=job.exploded".into()),
        (422, "type", "/v1/events?type=nothing.*".into()),
        (422, "type", format!("/v1/events?type={long}")),
        (422, "selector", "/v1/events?selector=role%3D(".into()),
        (422, "object", format!("/v1/events?object={long}")),
        (400, "bogus", "/v1/events?bogus=1".into()),
        (400, "follow", "/v1/events?follow=sometimes".into()),
    ];
    for (status, field, path) in cases {
        let (s, v) = d.get(&path, &d.admin).await;
        assert_eq!(s, status, "{path}: {v}");
        let msg = error_message(&v);
        assert!(msg.contains(field), "{path}: {field} not named in {v}");
        assert!(
            msg.len() < 400,
            "{path}: the message echoes the input: {msg}"
        );
    }
    let r = d
        .req(Method::GET, "/v1/events?follow=false", &d.admin)
        .header("Last-Event-ID", "not-an-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (s, _) = d.get("/v1/events?follow=false", &agent).await;
    assert_eq!(s, 403);
    let (s, _) = send(d.http.get(format!("{}/v1/events", d.url))).await;
    assert_eq!(s, 401);
    assert_eq!(
        fingerprint(&d).await,
        before,
        "a refused stream changed something"
    );
}
