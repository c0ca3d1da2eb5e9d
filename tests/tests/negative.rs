//! Every route against every kind of bad request: no token, garbage, expired, forged, the wrong
//! role, another tenant, malformed, oversized and unknown-field bodies. Not one may succeed,
//! none may answer 5xx, and nothing may change.

use std::time::Duration;

use flux_core::auth::{Authenticator, Role, SigningKey};
use flux_core::model::now_ms;
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
    vec![
        r(
            Method::POST,
            "/jobs",
            Some(json!({"command": "true", "node_id": "a1"})),
            Need::Operator,
        ),
        r(
            Method::POST,
            "/v1/jobs",
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
            "/states",
            Some(json!({"node_id": "a1", "check_cmd": "true", "apply_cmd": "true"})),
            Need::Operator,
        ),
        r(Method::GET, "/v1/audit", None, Need::Admin),
        r(Method::GET, "/v1/audit/verify", None, Need::Admin),
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
        r(Method::GET, "/v1/backup", None, Need::ClusterAdmin),
        r(
            Method::POST,
            "/v1/backup/restore",
            Some(json!({})),
            Need::ClusterAdmin,
        ),
    ]
}

/// What the store holds that a refused request could have changed.
async fn fingerprint(d: &Fluxd) -> (usize, usize, u64, usize) {
    let jobs = d.get("/v1/jobs?limit=10000", &d.admin).await.1;
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
    let (s, job) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": "true", "node_id": "a1"}),
        )
        .await;
    assert_eq!(s, 202);
    let job = job["job_id"].as_str().unwrap().to_string();
    let (s, _) = send(d.req(Method::PUT, "/v1/states/s1", &d.admin).json(
        &json!({"name": "s1", "targets": {"agents": ["a1"]}, "check": "true", "apply": "true"}),
    ))
    .await;
    assert_eq!(s, 201);

    // Identities that must get nowhere, or only as far as their role allows.
    let (key, _) = SigningKey::load_or_create(&d.data_dir().join("signing-key.json")).unwrap();
    let auth = Authenticator::new(vec![key.clone()], "fluxforge", "fluxforge");
    let (_, claims) = auth
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap();
    let mut exp = claims.clone();
    exp.exp = now_ms() / 1000 - 5;
    let expired = auth.sign(&exp).unwrap();
    let mut other = SigningKey::generate();
    other.kid = key.kid.clone();
    let forged = Authenticator::new(vec![other], "fluxforge", "fluxforge")
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap()
        .0;
    let viewer = d.token("default", "viewer", None).await;
    let operator = d.token("default", "operator", None).await;
    let agent = d.token("default", "agent", Some("a1")).await;
    let tenant_admin = d.token("acme", "admin", None).await;
    let acme_agent = d.token("acme", "agent", Some("a1")).await;

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
                if r.path.contains("/backup/restore") && name == "oversized" {
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
        if r.needs != Need::Agent && !r.path.contains("/attempts/") {
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
