//! Jobs end to end over TLS with real `fluxd`, `flux-agent` and `fluxctl` processes.

use std::time::Duration;

use flux_core::auth::{Authenticator, Role};
use flux_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// The original quick start, as written: `POST /jobs` with `{"command","node_id"}` and a bearer
/// token on port 8443-style TLS, then `GET /metrics` showing the leader.
#[tokio::test(flavor = "multi_thread")]
async fn seed_quick_start_over_tls() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let job = d
        .admin_post_expect(
            "/jobs",
            &json!({"command": "echo Hello FluxForge", "node_id": "agent-1"}),
            202,
        )
        .await;
    assert_eq!(job["status"], "queued");
    let id = job["job_id"].as_str().unwrap().to_string();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["exit_code"], 0);
    let logs = d.logs(&d.admin, &id).await;
    assert_eq!(logs, "Hello FluxForge\n");

    // The leader recomputes the cluster gauges in the background (every 5 s by default).
    eventually("the cluster gauges", Duration::from_secs(20), || async {
        let metrics = d.metrics_text().await?;
        [
            "flux_leader_status 1",
            "flux_connected_agents 1",
            "flux_queue_depth 0",
        ]
        .iter()
        .all(|l| metrics.lines().any(|m| m == *l))
        .then_some(())
    })
    .await;

    // Plain HTTP on the TLS port gets no answer a client could mistake for success.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", d.port))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(
        plain.map(|r| !r.status().is_success()).unwrap_or(true),
        "plain HTTP was served"
    );
    // A client that does not trust the local CA refuses the server.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only(Vec::<reqwest::Certificate>::new())
        .build()
        .unwrap();
    assert!(
        untrusting
            .get(format!("{}/healthz", d.url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_tokens_are_rejected_with_401() {
    let d = Fluxd::start().await;
    // Tokens signed with the server's own key but wrong in one way each.
    let key = d.signing_key();
    let same = d.authenticator();
    let (good, claims) = same
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap();
    let expired = expired_token(&same, &claims);
    let wrong_aud = Authenticator::new(vec![key.clone()], "fluxforge", "someone-else")
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap()
        .0;
    let forged = forged_admin_token(&key);
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(format!(
            r#"{{"alg":"none","typ":"JWT","kid":"{}"}}"#,
            key.kid
        )),
        b64.encode(serde_json::to_vec(&claims).unwrap())
    );

    let (s, _) = d.get("/v1/jobs", &good).await;
    assert_eq!(s, 200, "the control token must work");
    for (name, tok) in [
        ("expired", expired.as_str()),
        ("wrong audience", wrong_aud.as_str()),
        ("wrong signature", forged.as_str()),
        ("alg=none", alg_none.as_str()),
        ("garbage", "not-a-jwt"),
    ] {
        let (s, v) = d.get("/v1/jobs", tok).await;
        assert_eq!(s, 401, "{name}: {v}");
        assert_eq!(v["error"]["code"], "unauthorized", "{name}: {v}");
        let (s, _) = d.post("/v1/jobs", tok, &json!({"command": "true"})).await;
        assert_eq!(s, 401, "{name} could submit");
    }
    let (s, _) = send(d.http.get(format!("{}/v1/jobs", d.url))).await;
    assert_eq!(s, 401, "no token");

    // Revocation through fluxctl takes effect on the next request.
    let victim = d.token("default", "operator", None).await;
    assert_eq!(d.get("/v1/jobs", &victim).await.0, 200);
    ok(&d.fluxctl(&d.admin, &["token", "revoke", &victim])).unwrap();
    let (s, v) = d.get("/v1/jobs", &victim).await;
    assert_eq!(s, 401, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("revoked"),
        "{v}"
    );
    assert_eq!(
        d.get("/v1/jobs", &d.admin).await.0,
        200,
        "other tokens unaffected"
    );
    // Nothing was submitted by any rejected token.
    assert_eq!(d.get("/v1/jobs", &d.admin).await.1, json!([]));
}

#[tokio::test(flavor = "multi_thread")]
async fn roles_are_enforced_per_route() {
    let d = Fluxd::start().await;
    let (viewer, operator, agent) = d.role_tokens("default").await;
    let job = json!({"command": "true"});
    assert_eq!(d.post("/v1/jobs", &viewer, &job).await.0, 403);
    assert_eq!(d.post("/v1/jobs", &agent, &job).await.0, 403);
    assert_eq!(d.get("/v1/jobs", &agent).await.0, 403);
    assert_eq!(d.get("/v1/jobs", &viewer).await.0, 200);
    let body = json!({"role": "admin", "tenant": "default"});
    assert_eq!(d.post("/v1/tokens", &operator, &body).await.0, 403);
    assert_eq!(d.post("/v1/tokens", &viewer, &body).await.0, 403);
    assert_eq!(
        d.post("/v1/agent/register", &operator, &json!({})).await.0,
        403
    );
    let (s, v) = d.post("/v1/jobs", &operator, &job).await;
    assert_eq!(s, 202, "{v}");
    // An agent token without a node id cannot be made.
    let (s, v) = d
        .post("/v1/tokens", &d.admin, &json!({"role": "agent"}))
        .await;
    assert_eq!(s, 422, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tenants_cannot_see_or_touch_each_other() {
    let d = Fluxd::start().await;
    let a = d.token("acme", "operator", None).await;
    let b = d.token("globex", "operator", None).await;
    let _agent_a = d.agent("acme", "shared-name", &[]).await;
    let id = d.submit(&a, &json!({"command": "echo acme-secret"})).await;
    let done = d.wait_job(&a, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    for path in [
        format!("/v1/jobs/{id}"),
        format!("/v1/jobs/{id}/logs"),
        format!("/v1/jobs/{id}/attempts"),
        format!("/v1/jobs/{id}/wait?timeout_secs=1"),
        "/v1/agents/shared-name".to_string(),
    ] {
        let (s, v) = d.get(&path, &b).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (s, _) = d
        .post(&format!("/v1/jobs/{id}/cancel"), &b, &json!({}))
        .await;
    assert_eq!(s, 404);
    assert_eq!(d.get("/v1/jobs", &b).await.1, json!([]));
    assert_eq!(d.get("/v1/agents", &b).await.1, json!([]));
    // The tenant never comes from the body.
    let (s, v) = d
        .post(
            "/v1/jobs",
            &b,
            &json!({"command": "true", "tenant": "acme"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    // A job of globex addressed to acme's agent name never runs on it.
    let (s, job) = d
        .post(
            "/v1/jobs",
            &b,
            &json!({"command": "true", "node_id": "shared-name", "allow_unknown_node": true}),
        )
        .await;
    assert_eq!(s, 202);
    let bid = job["job_id"].as_str().unwrap();
    let (_, v) = d
        .get(&format!("/v1/jobs/{bid}/wait?timeout_secs=2"), &b)
        .await;
    assert_eq!(v["status"], "queued", "{v}");
    // Acme's view is unchanged: exactly its one job.
    let list = d.get("/v1/jobs", &a).await.1;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_oversized_bodies_get_4xx_and_write_nothing() {
    let d = Fluxd::start_args(&["--max-body-bytes", "65536"]).await;
    let post_raw = |body: Vec<u8>, ctype: Option<&str>| {
        let mut rb = d.req(Method::POST, "/v1/jobs", &d.admin).body(body);
        if let Some(c) = ctype {
            rb = rb.header("content-type", c);
        }
        send(rb)
    };
    let json_ct = Some("application/json");
    let cases: Vec<(&str, Vec<u8>, Option<&str>, u16)> = vec![
        ("syntax", b"{\"command\": ".to_vec(), json_ct, 400),
        ("not utf8", vec![0xff, 0xfe, 0x00], json_ct, 400),
        // serde reads a struct from an array of its fields in order: this was a job once.
        (
            "the fields as an array",
            br#"["true"]"#.to_vec(),
            json_ct,
            422,
        ),
        (
            "unknown field",
            br#"{"command":"true","bogus":1}"#.to_vec(),
            json_ct,
            422,
        ),
        ("wrong type", br#"{"command":42}"#.to_vec(), json_ct, 422),
        ("no command", br#"{"node_id":"x"}"#.to_vec(), json_ct, 422),
        (
            "both forms",
            br#"{"command":"true","argv":["true"]}"#.to_vec(),
            json_ct,
            422,
        ),
        (
            "bad node id",
            br#"{"command":"true","node_id":"../x"}"#.to_vec(),
            json_ct,
            422,
        ),
        (
            "no content type",
            br#"{"command":"true"}"#.to_vec(),
            None,
            415,
        ),
        (
            "oversized",
            format!(r#"{{"command":"echo {}"}}"#, "x".repeat(200_000)).into_bytes(),
            json_ct,
            413,
        ),
    ];
    for (name, body, ct, want) in cases {
        let (s, v) = post_raw(body, ct).await;
        assert_eq!(s, want, "{name}: {v}");
        assert!(v["error"]["code"].is_string(), "{name}: error shape {v}");
        assert!(v["error"]["message"].is_string(), "{name}: error shape {v}");
    }
    let (s, _) = d.get("/v1/jobs?status=bogus", &d.admin).await;
    assert_eq!(s, 400);
    let (s, _) = d.get("/v1/jobs/no-such-job", &d.admin).await;
    assert_eq!(s, 404);
    assert_eq!(d.get("/v1/jobs", &d.admin).await.1, json!([]));
    // The server is still healthy after all of it.
    assert_eq!(
        d.post("/v1/jobs", &d.admin, &json!({"command": "true"}))
            .await
            .0,
        202
    );
}

/// `fluxctl job cancel` on a running `sleep 600` kills the whole process group, including a
/// background child, and records the job as cancelled.
#[tokio::test(flavor = "multi_thread")]
async fn cancelled_sleep_leaves_no_process_behind() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let work = tempfile::tempdir().unwrap();
    let cmd = format!(
        "sleep 600 & echo $! > {dir}/bg; echo $$ > {dir}/main; wait",
        dir = work.path().display()
    );
    let job = d
        .admin_post_expect("/v1/jobs", &json!({"command": cmd}), 202)
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let main = read_pid(&work.path().join("main"), T).await;
    let bg = read_pid(&work.path().join("bg"), T).await;
    assert!(pid_alive(main) && pid_alive(bg));
    d.wait_job(&d.admin, &id, T, |v| v["status"] == "running")
        .await;

    let out = d.fluxctl(&d.admin, &["job", "cancel", &id]);
    ok(&out).unwrap();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    eventually("job processes gone", T, || async {
        (!pid_alive(main) && !pid_alive(bg)).then_some(())
    })
    .await;
    // Cancelling again is harmless; the job stays cancelled.
    let (s, v) = d
        .post(&format!("/v1/jobs/{id}/cancel"), &d.admin, &json!({}))
        .await;
    assert!(s == 200 || s == 409, "{s} {v}");
    assert_eq!(
        d.get(&format!("/v1/jobs/{id}"), &d.admin).await.1["status"],
        "cancelled"
    );
}

/// A run shorter than the agent's start delay is started and ended by its result (no start
/// request, its start dated by the run's length); a longer one reports its start while it
/// runs, so it is seen running.
#[tokio::test(flavor = "multi_thread")]
async fn a_short_run_is_started_by_its_result_and_a_long_one_on_its_own() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let starts = || async {
        let text = d.metrics_text().await.expect("metrics");
        text.lines()
            .filter(|l| {
                l.starts_with("flux_http_requests_total{")
                    && l.contains("route=\"/v1/agent/attempts/{id}/start\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
    };
    let job = d
        .admin_post_expect("/v1/jobs", &json!({"command": "true"}), 202)
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let at = |j: &Value, f: &str| j[f].as_u64().unwrap_or_else(|| panic!("{f} in {j}"));
    assert!(at(&done, "created_at") <= at(&done, "started_at"), "{done}");
    assert!(
        at(&done, "started_at") <= at(&done, "finished_at"),
        "{done}"
    );
    assert_eq!(starts().await, 0.0, "a short run sent a start request");

    let job = d
        .admin_post_expect("/v1/jobs", &json!({"command": "sleep 1"}), 202)
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let running = d
        .wait_job(&d.admin, &id, T, |v| {
            v["status"] == "running" || terminal(v)
        })
        .await;
    assert_eq!(running["status"], "running", "{running}");
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(
        at(&done, "finished_at") - at(&done, "started_at") >= 500,
        "{done}"
    );
    assert_eq!(starts().await, 1.0);
}

/// `POST /v1/jobs/run` submits and waits in one request: its status and `Location` come once
/// the job is committed (before it ends), its body is the ended job, or the job as it is at the
/// deadline; a replayed idempotency key answers 200 with the same job; a fan-out and a viewer
/// are refused and submit nothing.
#[tokio::test(flavor = "multi_thread")]
async fn run_submits_and_waits_in_one_request() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let run = |body: Value, secs: u64| {
        d.req(
            Method::POST,
            &format!("/v1/jobs/run?timeout_secs={secs}"),
            &d.admin,
        )
        .json(&body)
        .send()
    };
    let resp = run(json!({"command": "echo ran; exit 3"}), 20)
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let at = header_text(&resp, "location").expect("a Location");
    let job: Value = resp.json().await.unwrap();
    assert_eq!(at, format!("/v1/jobs/{}", job["job_id"].as_str().unwrap()));
    assert_eq!(
        (&job["status"], &job["exit_code"]),
        (&json!("failed"), &json!(3))
    );
    assert_eq!(d.get(&at, &d.admin).await.1["status"], "failed");
    assert_eq!(
        d.logs(&d.admin, job["job_id"].as_str().unwrap()).await,
        "ran\n"
    );

    // The headers come before the end: the job they name is still going when they arrive.
    let resp = run(json!({"command": "sleep 1"}), 20).await.unwrap();
    assert_eq!(resp.status(), 202);
    let at = header_text(&resp, "location").expect("a Location");
    let (_, now) = d.get(&at, &d.admin).await;
    assert!(!terminal(&now), "{now}");
    let job: Value = resp.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");

    // At the deadline the body is the job as it is.
    let resp = run(json!({"command": "sleep 5"}), 1).await.unwrap();
    let job: Value = resp.json().await.unwrap();
    assert!(!terminal(&job), "{job}");

    // A replay names the job the key made, ended.
    let keyed = |secs: u64| {
        d.req(
            Method::POST,
            &format!("/v1/jobs/run?timeout_secs={secs}"),
            &d.admin,
        )
        .header("X-Flux-Idempotency-Key", "run-once")
        .json(&json!({"command": "true"}))
        .send()
    };
    let first = keyed(20).await.unwrap();
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    let again = keyed(20).await.unwrap();
    assert_eq!(again.status(), 200);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["job_id"], first["job_id"]);
    assert_eq!(again["status"], "succeeded");

    let count = || async {
        let v = d.get("/v1/jobs?limit=1000", &d.admin).await.1;
        v.as_array().map_or(0, Vec::len)
    };
    let jobs = count().await;
    let fan = run(json!({"command": "true", "fan_out": true}), 5)
        .await
        .unwrap();
    assert_eq!(fan.status(), 422);
    let v: Value = fan.json().await.unwrap();
    assert!(error_message(&v).contains("fan_out"), "{v}");
    let (viewer, _, _) = d.role_tokens("default").await;
    let (s, _) = send(
        d.req(Method::POST, "/v1/jobs/run", &viewer)
            .json(&json!({"command": "true"})),
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = send(
        d.req(Method::POST, "/v1/jobs/run?timeout_secs=soon", &d.admin)
            .json(&json!({"command": "true"})),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert!(error_message(&v).contains("timeout_secs"), "{v}");
    assert_eq!(count().await, jobs, "a refused run submitted a job");
}

/// The poll a real agent sends once it has a task finds nothing new, and the change notices
/// show it: it waits without reading the inbox. The next job's task still reaches the agent
/// (the entry wakes the waiting poll), every time.
#[tokio::test(flavor = "multi_thread")]
async fn a_poll_with_nothing_new_waits_unread_and_the_next_task_still_wakes_it() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let unread = || async { d.metric("flux_task_polls_unread_total").await.unwrap() };
    let before = unread().await;
    const JOBS: usize = 4;
    for i in 0..JOBS {
        let resp = d
            .req(Method::POST, "/v1/jobs/run?timeout_secs=20", &d.admin)
            .json(&json!({"command": format!("echo {i}")}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let job: Value = resp.json().await.unwrap();
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(
            d.logs(&d.admin, job["job_id"].as_str().unwrap()).await,
            format!("{i}\n")
        );
    }
    // Each task's delivery is followed by a poll from past it, which the memory answers.
    let skipped = unread().await - before;
    assert!(
        skipped >= JOBS as f64,
        "{skipped} unread polls for {JOBS} jobs"
    );
}

/// An agent killed with SIGKILL mid-job: the attempt is abandoned and the job runs again on
/// another eligible agent; the dead agent's attempt record stays.
#[tokio::test(flavor = "multi_thread")]
async fn agent_killed_mid_job_is_requeued_to_another_agent() {
    let d = Fluxd::start_with(FluxdOpts::fast_liveness()).await;
    let mut a = d.agent("default", "agent-a", &["pool=x"]).await;
    let work = tempfile::tempdir().unwrap();
    // On agent-a the job blocks; anywhere else it finishes at once.
    let (id, orphan) = d.submit_blocking_on("agent-a", work.path(), T).await;
    let _b = d.agent("default", "agent-b", &["pool=x"]).await;
    a.kill9();
    // The job's process outlives a SIGKILLed agent (nothing can prevent that); clean it up.
    kill_pid(orphan);

    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["agent"], "agent-b", "{done}");
    let logs = d.logs(&d.admin, &id).await;
    assert!(logs.contains("ran on agent-b"), "{logs}");
    let (_, atts) = d.get(&format!("/v1/jobs/{id}/attempts"), &d.admin).await;
    let atts = atts.as_array().expect("attempts").clone();
    assert_eq!(atts.len(), 2, "{atts:?}");
    assert_eq!(atts[0]["agent"], "agent-a");
    assert_eq!(atts[0]["state"], "abandoned");
    assert_eq!(atts[1]["agent"], "agent-b");
    assert_eq!(atts[1]["state"], "finished");
    let (_, agent) = d.get("/v1/agents/agent-a", &d.admin).await;
    assert_eq!(agent["state"], "dead", "{agent}");
}

/// `fluxctl job run --wait` streams output and exits with the remote exit code; `-o json`
/// prints one JSON document a script can parse.
#[tokio::test(flavor = "multi_thread")]
async fn fluxctl_run_wait_exit_codes_and_json() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let out = d.fluxctl(
        &d.admin,
        &[
            "job",
            "run",
            "--wait",
            "echo to-stdout; echo to-stderr >&2; exit 3",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(stdout(&out).contains("to-stdout"), "{}", stdout(&out));
    assert!(stdout(&out).contains("to-stderr") || stderr(&out).contains("to-stderr"));

    let out = d.fluxctl_json(
        &d.admin,
        &[
            "job",
            "run",
            "--wait",
            "-e",
            "GREETING=hi",
            "echo $GREETING",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("one JSON document");
    assert_eq!(v["job"]["status"], "succeeded", "{v}");
    assert_eq!(v["job"]["exit_code"], 0, "{v}");
    assert_eq!(v["output"], "hi\n", "{v}");

    // Argv form, no shell: the dollar sign is literal.
    let out = d.fluxctl(&d.admin, &["job", "run", "--wait", "echo", "$HOME"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out).lines().last(), Some("$HOME"));

    // Timeout: exit 124, as timeout(1).
    let out = d.fluxctl(
        &d.admin,
        &["job", "run", "--wait", "--timeout", "1s", "sleep 600"],
    );
    assert_eq!(out.status.code(), Some(124), "{}", stderr(&out));

    // An unreachable server is a clear error, not a panic.
    let out = std::process::Command::new(bin("fluxctl"))
        .args([
            "--server",
            &format!("https://127.0.0.1:{}", free_port()),
            "--insecure",
            "--token",
            &d.admin,
            "job",
            "list",
        ])
        .env_remove("FLUX_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert!(!stderr(&out).is_empty());

    // job list and agents list in JSON.
    let v = json_of(&d.fluxctl_json(&d.admin, &["job", "list"]));
    assert_eq!(v.as_array().unwrap().len(), 4, "{v}");
    let v = json_of(&d.fluxctl_json(&d.admin, &["agents", "list"]));
    assert_eq!(v[0]["node_id"], "agent-1", "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotency_key_runs_a_job_once() {
    let d = Fluxd::start().await;
    let body = json!({"command": "true"});
    let submit = || {
        send(
            d.req(Method::POST, "/v1/jobs", &d.admin)
                .header("X-Flux-Idempotency-Key", "deploy-42")
                .json(&body),
        )
    };
    let (s1, j1) = submit().await;
    let (s2, j2) = submit().await;
    assert_eq!((s1, s2), (202, 200), "{j1} {j2}");
    assert_eq!(j1["job_id"], j2["job_id"]);
    assert_eq!(d.count("/v1/jobs", &d.admin).await, 1);
    // The same key with a different body is a conflict, not a silent replay.
    let (s3, v) = send(
        d.req(Method::POST, "/v1/jobs", &d.admin)
            .header("X-Flux-Idempotency-Key", "deploy-42")
            .json(&json!({"command": "false"})),
    )
    .await;
    assert_eq!(s3, 409, "{v}");
}

#[tokio::test(flavor = "multi_thread")]
async fn output_is_capped_with_a_visible_marker() {
    let d = Fluxd::start_args(&["--output-cap-bytes", "10000"]).await;
    let _agent = d.agent("default", "agent-1", &[]).await;
    let (_, job) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": "yes x | head -c 100000; echo tail-line"}),
        )
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let logs = d.logs(&d.admin, &id).await;
    let marker = "[fluxforge: output truncated, ";
    assert!(logs.contains(marker), "no truncation marker");
    // The cap counts what the chunks take in the store: "x\n" is 3 bytes as JSON, plus each
    // chunk's key and record.
    let stored = &logs[..logs.find(marker).unwrap() - 1];
    assert!(stored.len() <= 10_000, "stored {} bytes", stored.len());
    assert!(stored.len() >= 6_000, "stored only {} bytes", stored.len());
    assert!(
        logs.contains(&format!("{} bytes not stored", 100_010 - stored.len())),
        "{}",
        &logs[logs.len() - 200..]
    );
    assert!(!logs.contains("tail-line"));
}

/// `follow=true` streams output while the job runs and ends when it finishes.
#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_streams_until_the_end() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let work = tempfile::tempdir().unwrap();
    let gate = work.path().join("gate");
    let cmd = format!(
        "echo first; while [ ! -e {g} ]; do sleep 0.05; done; echo second",
        g = gate.display()
    );
    let (_, job) = d.post("/v1/jobs", &d.admin, &json!({"command": cmd})).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let mut resp = d.logs_response(&d.admin, &id, "follow=true").await;
    assert_eq!(resp.status(), 200);
    let mut seen = String::new();
    while !seen.contains("first") {
        let c = tokio::time::timeout(T, resp.chunk())
            .await
            .expect("chunk in time");
        seen.push_str(&String::from_utf8_lossy(&c.unwrap().expect("stream open")));
    }
    assert!(!seen.contains("second"));
    std::fs::write(&gate, b"").unwrap();
    let rest = tokio::time::timeout(T, resp.text())
        .await
        .expect("stream ends")
        .unwrap();
    assert_eq!(format!("{seen}{rest}"), "first\nsecond\n");
}

/// SIGTERM stops fluxd gracefully (exit 0), and the data survives a restart.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_is_graceful_and_state_survives_restart() {
    let mut d = Fluxd::start().await;
    let (_, job) = d
        .post("/v1/jobs", &d.admin, &json!({"command": "true"}))
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let status = terminate(&mut d.proc, "fluxd exit", T).await;
    assert!(status.success(), "{status:?}");
    // Same data dir and port: the job, the key and the admin token are all still valid.
    let port = d.port;
    let mut cmd = std::process::Command::new(bin("fluxd"));
    cmd.arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(d.data_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let v = eventually("restarted fluxd", T, || async {
        let (s, v) = d
            .req(Method::GET, &format!("/v1/jobs/{id}"), &d.admin)
            .await_ok()
            .await?;
        (s == 200).then_some(v)
    })
    .await;
    assert_eq!(v["job_id"], id.as_str());
    let _ = child.kill();
    let _ = child.wait();
}

trait AwaitOk {
    async fn await_ok(self) -> Option<(u16, Value)>;
}

impl AwaitOk for reqwest::RequestBuilder {
    async fn await_ok(self) -> Option<(u16, Value)> {
        let r = self.send().await.ok()?;
        let s = r.status().as_u16();
        Some((s, r.json().await.unwrap_or(Value::Null)))
    }
}

/// The CI example in `examples/` works against a live cluster as documented.
#[tokio::test(flavor = "multi_thread")]
async fn ci_example_script_runs_steps_and_reports_them() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let operator = d.token("default", "operator", None).await;
    let ci_run = || {
        d.example("ci-deploy.sh", &operator)
            .arg("agent-1")
            .env("CI_PIPELINE_ID", "77")
            .output()
            .unwrap()
    };
    let out = ci_run();
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", stderr(&out));
    assert_eq!(text.matches("exit 0").count(), 3, "{text}");
    assert!(text.contains("all steps succeeded on agent-1"), "{text}");
    // A CI retry of the same pipeline reuses the jobs (idempotency keys) instead of rerunning.
    let jobs = d.get("/v1/jobs", &operator).await.1;
    assert_eq!(jobs.as_array().unwrap().len(), 3);
    let again = ci_run();
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(d.count("/v1/jobs", &operator).await, 3);
}

/// `fluxctl bench jobs` runs exactly the jobs it reports, and counts failures.
#[tokio::test(flavor = "multi_thread")]
async fn bench_jobs_reports_what_it_ran() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let out = d.fluxctl_json(
        &d.admin,
        &["bench", "jobs", "--count", "6", "--concurrency", "3"],
    );
    let v = json_of(&out);
    assert_eq!(v["jobs"], 6, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert!(v["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(v["p99_ms"].as_f64().unwrap() >= v["p50_ms"].as_f64().unwrap());
    // Submission and dispatch are parts of the round trip, so neither exceeds its maximum.
    for part in ["submit", "dispatch"] {
        let p = &v[part];
        assert_eq!(p["samples"], 6, "{v}");
        assert!(
            p["p50_ms"].as_f64().unwrap() <= p["p99_ms"].as_f64().unwrap(),
            "{v}"
        );
        assert!(
            p["max_ms"].as_f64().unwrap() <= v["max_ms"].as_f64().unwrap() + 1.0,
            "{v}"
        );
    }
    assert!(v["submit"]["p50_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(d.count("/v1/jobs", &d.admin).await, 6);
    let out = d.fluxctl_json(
        &d.admin,
        &["bench", "jobs", "--count", "2", "--command", "exit 1"],
    );
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["failed"], 2, "{v}");
    // `bench submit` creates exactly the jobs it counts, without waiting for them.
    let out = d.fluxctl_json(
        &d.admin,
        &["bench", "submit", "--count", "5", "--concurrency", "2"],
    );
    let v = json_of(&out);
    assert_eq!(
        (v["jobs"].as_u64(), v["refused"].as_u64()),
        (Some(5), Some(0)),
        "{v}"
    );
    assert_eq!(v["latency"]["samples"], 5, "{v}");
    assert!(v["submits_per_sec"].as_f64().unwrap() > 0.0, "{v}");
    let (_, jobs) = d.get("/v1/jobs", &d.admin).await;
    assert_eq!(jobs.as_array().unwrap().len(), 6 + 2 + 5);
}

/// Past its limit of held long-polls a node answers 429 with Retry-After, ordinary requests keep
/// their own budget, and capacity comes back when the long-poll ends.
#[tokio::test(flavor = "multi_thread")]
async fn long_polls_beyond_the_limit_are_shed_with_429() {
    let d = Fluxd::start_args(&["--max-long-polls", "1"]).await;
    let (_, job) = d
        .post("/v1/jobs", &d.admin, &json!({"command": "true"}))
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    // The held long-poll retries until it is admitted (a probe below may take the one slot
    // first), then stays open for a minute.
    let held = {
        let rb = d.req(
            Method::GET,
            &format!("/v1/jobs/{id}/wait?timeout_secs=60"),
            &d.admin,
        );
        tokio::spawn(async move {
            loop {
                let r = rb.try_clone().unwrap().send().await;
                if !matches!(&r, Ok(r) if r.status() == 429) {
                    return r;
                }
            }
        })
    };
    let wait_path = format!("/v1/jobs/{id}/wait?timeout_secs=1");
    let retry_after = eventually("a shed long-poll", T, || async {
        let r = d.req(Method::GET, &wait_path, &d.admin).send().await.ok()?;
        (r.status() == 429).then(|| r.headers().get("retry-after").cloned())
    })
    .await;
    assert!(retry_after.is_some(), "429 without Retry-After");
    assert_eq!(
        d.get("/v1/jobs", &d.admin).await.0,
        200,
        "ordinary requests starved"
    );
    held.abort();
    eventually("capacity back after the long-poll ended", T, || async {
        (d.get(&wait_path, &d.admin).await.0 == 200).then_some(())
    })
    .await;
}

/// Contexts in the config file carry server, CA and token; flags and FLUX_* override them.
#[tokio::test(flavor = "multi_thread")]
async fn fluxctl_contexts_select_server_and_credentials() {
    let d = Fluxd::start().await;
    let cfg = d.dir.path().join("ctx.toml");
    let tok = d.dir.path().join("op.token");
    std::fs::write(&tok, d.token("default", "viewer", None).await).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin("fluxctl"))
            .args(args)
            .env("FLUX_CONFIG", &cfg)
            .env_remove("FLUX_SERVER")
            .env_remove("FLUX_TOKEN")
            .env_remove("FLUX_TOKEN_FILE")
            .env_remove("FLUX_CA")
            .env_remove("FLUX_CONTEXT")
            .output()
            .unwrap()
    };
    let (ca, tokp) = (d.ca_path(), tok.clone());
    ok(&run(&[
        "config",
        "set-context",
        "lab",
        "--to-server",
        &d.url,
        "--with-token-file",
        tokp.to_str().unwrap(),
        "--with-ca",
        ca.to_str().unwrap(),
    ]))
    .unwrap();
    // Not the current context yet: the default server (localhost:8443) is not ours.
    ok(&run(&["config", "use-context", "lab"])).unwrap();
    let who = json_of(&run(&["-o", "json", "whoami"]));
    assert_eq!(who["role"], "viewer", "{who}");
    // An explicit token overrides the context's.
    let who = json_of(&run(&["-o", "json", "--token", &d.admin, "whoami"]));
    assert_eq!(who["role"], "admin", "{who}");
    // A viewer context cannot submit: exit non-zero with the server's 403 message.
    let out = run(&["job", "run", "true"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    // An unknown context is a clear error.
    let out = run(&["--context", "nope", "status"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
}

/// Only admins of the cluster tenant manage other tenants' tokens; a tenant admin's revocation
/// by jti cannot reach another tenant's token.
#[tokio::test(flavor = "multi_thread")]
async fn tenant_admins_cannot_mint_or_revoke_for_other_tenants() {
    let d = Fluxd::start().await;
    let acme_admin = d.token("acme", "admin", None).await;
    for role in ["admin", "agent", "viewer"] {
        let (s, v) = d
            .post(
                "/v1/tokens",
                &acme_admin,
                &json!({"tenant": "globex", "role": role, "node_id": "n1"}),
            )
            .await;
        assert_eq!(s, 403, "{role}: {v}");
    }
    // Its own tenant is fine.
    let (s, v) = d
        .post("/v1/tokens", &acme_admin, &json!({"role": "viewer"}))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["claims"]["tenant"], "acme");

    let globex = d.token("globex", "viewer", None).await;
    let jti = flux_core::auth::peek_claims(&globex).unwrap().jti;
    d.post_expect(
        "/v1/tokens/revoke",
        &acme_admin,
        &json!({"jti": jti, "tenant": "globex"}),
        404,
    )
    .await;
    let (s, _) = d
        .post("/v1/tokens/revoke", &acme_admin, &json!({"token": globex}))
        .await;
    assert_eq!(s, 404);
    // Revoking the same jti in its own tenant does not touch globex's token.
    let (s, _) = d
        .post("/v1/tokens/revoke", &acme_admin, &json!({"jti": jti}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        d.get("/v1/jobs", &globex).await.0,
        200,
        "globex token was revoked"
    );
    // The cluster admin can.
    d.admin_post_expect(
        "/v1/tokens/revoke",
        &json!({"jti": jti, "tenant": "globex"}),
        200,
    )
    .await;
    assert_eq!(d.get("/v1/jobs", &globex).await.0, 401);
}

/// Stopping an agent (SIGTERM) interrupts its jobs; they are requeued, not recorded as
/// cancelled, and finish on another agent.
#[tokio::test(flavor = "multi_thread")]
async fn agent_stopped_gracefully_mid_job_has_its_job_requeued() {
    let d = Fluxd::start().await;
    let mut a = d.agent("default", "agent-a", &[]).await;
    let work = tempfile::tempdir().unwrap();
    let (id, pid) = d.submit_blocking_on("agent-a", work.path(), T).await;
    let _b = d.agent("default", "agent-b", &[]).await;
    let status = terminate(&mut a, "agent-a exit", T).await;
    assert!(status.success(), "agent exit {status:?}");
    assert!(
        !pid_alive(pid),
        "the job's process outlived the agent's graceful stop"
    );
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["agent"], "agent-b", "{done}");
    let (_, atts) = d.get(&format!("/v1/jobs/{id}/attempts"), &d.admin).await;
    assert_eq!(atts[0]["state"], "abandoned", "{atts}");
}

/// Kills agent `agent-1` (`a`) with SIGKILL, which leaves its job `orphan` running, restarts it
/// with the same arguments `extra` and waits until the restarted agent has killed the orphan.
async fn crash_and_restart(d: &Fluxd, a: &mut Proc, extra: &[&str], orphan: i32) -> Proc {
    a.kill9();
    assert!(
        pid_alive(orphan),
        "SIGKILL of the agent cannot reach its job"
    );
    let a2 = d.agent_with_args("default", "agent-1", &[], extra).await;
    eventually("the orphaned job killed", T, || async {
        (!pid_alive(orphan)).then_some(())
    })
    .await;
    a2
}

/// An agent killed with SIGKILL and restarted under the same node id: the restarted agent kills
/// the job its predecessor left running, and the attempt is rerun instead of being lost or
/// running twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_crashed_agent_restarted_reruns_its_attempt_once() {
    let d = Fluxd::start().await;
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let extra = ["--state-dir", state_arg.as_str()];
    let servers = [d.url.clone()];
    let mut a = d
        .agent_full("default", "agent-1", &[], &servers, &extra)
        .await;
    let work = tempfile::tempdir().unwrap();
    let cmd = format!(
        "case $FLUX_ATTEMPT_ID in *.1) echo $$ > {dir}/pid; exec sleep 600;; esac; echo rerun as $FLUX_ATTEMPT_ID",
        dir = work.path().display()
    );
    let (_, job) = d.post("/v1/jobs", &d.admin, &json!({"command": cmd})).await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let first = read_pid(&work.path().join("pid"), T).await;
    d.wait_job(&d.admin, &id, T, |v| v["status"] == "running")
        .await;
    let _a2 = crash_and_restart(&d, &mut a, &extra, first).await;
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(d.logs(&d.admin, &id).await, format!("rerun as {id}.2\n"));
    let (_, atts) = d.get(&format!("/v1/jobs/{id}/attempts"), &d.admin).await;
    assert_eq!(atts[0]["state"], "abandoned", "{atts}");
}

/// The same crash before the run's start was reported (`--start-after` keeps it unreported):
/// the restarted agent reports the attempt its predecessor launched as interrupted, so it is
/// requeued as a counted attempt, not delivered and run again under the same attempt id; with
/// `max_attempts` 1 the job fails instead of running twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_crash_before_the_start_report_does_not_rerun_the_attempt() {
    let d = Fluxd::start().await;
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().display().to_string();
    let extra = ["--state-dir", state_arg.as_str(), "--start-after", "10s"];
    let servers = [d.url.clone()];
    let mut a = d
        .agent_full("default", "agent-1", &[], &servers, &extra)
        .await;
    let work = tempfile::tempdir().unwrap();
    let ran = work.path().join("ran");
    let cmd = format!(
        "echo $FLUX_ATTEMPT_ID >> {ran}; echo $$ > {dir}/pid; exec sleep 600",
        ran = ran.display(),
        dir = work.path().display()
    );
    let (_, job) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": cmd, "max_attempts": 1}),
        )
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    let first = read_pid(&work.path().join("pid"), T).await;
    let (_, seen) = d.get(&format!("/v1/jobs/{id}"), &d.admin).await;
    assert_eq!(seen["status"], "assigned", "the start was reported: {seen}");
    let _a2 = crash_and_restart(&d, &mut a, &extra, first).await;
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let (_, atts) = d.get(&format!("/v1/jobs/{id}/attempts"), &d.admin).await;
    assert_eq!(atts[0]["state"], "abandoned", "{atts}");
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        format!("{id}.1\n"),
        "the attempt ran again"
    );
}

/// An agent cut off by a network partition: unreachable first (its attempt kept), then dead (the
/// attempt goes to another agent); when the partition heals it is reintegrated and the attempt
/// that was reassigned meanwhile is cancelled on it, so the job's work is not done twice.
#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_agent_is_reintegrated_and_its_reassigned_attempt_cancelled() {
    let d = Fluxd::start_args(&[
        "--heartbeat-interval",
        "250ms",
        "--unreachable-after",
        "1s",
        "--dead-after",
        "4s",
        "--sweep-interval",
        "200ms",
        "--gauges-every",
        "200ms",
    ])
    .await;
    let proxy = FaultProxy::start(d.port).await.expect("fault proxy");
    let _a = d
        .agent_with_servers("default", "agent-a", &[], &[proxy.url()])
        .await;
    let work = tempfile::tempdir().unwrap();
    let (id, pid) = d.submit_blocking_on("agent-a", work.path(), T).await;

    proxy.cut();
    // Unreachable: the attempt stays with agent-a.
    eventually("agent-a unreachable", T, || async {
        let (_, a) = d.get("/v1/agents/agent-a", &d.admin).await;
        (a["state"] == "unreachable").then_some(())
    })
    .await;
    let (_, j) = d.get(&format!("/v1/jobs/{id}"), &d.admin).await;
    assert_eq!(j["status"], "running", "{j}");
    assert_eq!(j["agent"], "agent-a", "{j}");
    // The gauges follow (counted by the leader's sweeps on its view of the fleet).
    eventually("the agents gauge", T, || async {
        let m = d.metrics_text().await?;
        let has = |l: &str| m.lines().any(|x| x == l);
        (has("flux_agents{state=\"unreachable\"} 1") && has("flux_agents{state=\"online\"} 0"))
            .then_some(())
    })
    .await;
    // Dead: requeued, and run by agent-b.
    let _b = d.agent("default", "agent-b", &[]).await;
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["agent"], "agent-b", "{done}");
    assert!(pid_alive(pid), "agent-a cannot know yet");

    proxy.heal();
    eventually("agent-a back online", T, || async {
        let (_, a) = d.get("/v1/agents/agent-a", &d.admin).await;
        (a["state"] == "online").then_some(())
    })
    .await;
    eventually("the reassigned attempt killed on agent-a", T, || async {
        (!pid_alive(pid)).then_some(())
    })
    .await;
    // agent-a's late report does not change the job.
    let (_, j) = d.get(&format!("/v1/jobs/{id}"), &d.admin).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["agent"], "agent-b", "{j}");
    let (_, atts) = d.get(&format!("/v1/jobs/{id}/attempts"), &d.admin).await;
    assert_eq!(atts[0]["state"], "abandoned", "{atts}");
    assert_eq!(atts[1]["state"], "finished", "{atts}");
    assert_eq!(d.logs(&d.admin, &id).await, "ran on agent-b\n");
}

/// Requests fluxd answered on `route` with status 200, from its `/metrics`.
async fn answered(d: &Fluxd, route: &str) -> f64 {
    let text = d.metrics_text().await.expect("metrics");
    let label = format!("route=\"{route}\"");
    text.lines()
        .filter(|l| l.starts_with("flux_http_requests_total{") && l.contains(&label))
        .filter(|l| l.contains("status=\"200\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// An idle agent's polls stand for its heartbeats: once fluxd says it counts them (a header
/// of the poll reply), the agent polls at least once per interval and sends no heartbeat, and
/// stays online although a silence of `--unreachable-after` would mark it unreachable. While a
/// job runs it heartbeats again (its running attempts go with each heartbeat).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_agent_is_kept_online_by_its_polls_alone() {
    let d = Fluxd::start_args(&[
        "--heartbeat-interval",
        "1s",
        "--unreachable-after",
        "3s",
        "--dead-after",
        "6s",
        "--sweep-interval",
        "200ms",
    ])
    .await;
    let _a = d.agent("default", "agent-a", &[]).await;
    let hb = "/v1/agent/heartbeat";
    let polls = "/v1/agent/tasks";

    // A span of five polls (over four seconds at one a second) without a heartbeat, once the
    // agent has learned that polls count.
    eventually("a span of polls without heartbeats", T, || async {
        let (h0, p0) = (answered(&d, hb).await, answered(&d, polls).await);
        eventually("five more polls", T, || async {
            (answered(&d, polls).await >= p0 + 5.0).then_some(())
        })
        .await;
        (answered(&d, hb).await == h0).then_some(())
    })
    .await;
    let (_, a) = d.get("/v1/agents/agent-a", &d.admin).await;
    assert_eq!(a["state"], "online", "{a}");
    // Never marked unreachable in between (a poll would have brought it back since).
    let log = d.get_response("/v1/events?follow=false", &d.admin).await;
    assert_eq!(log.status(), 200);
    let log = log.text().await.unwrap();
    assert!(log.contains("agent.registered"), "{log}");
    assert!(!log.contains("agent.unreachable"), "{log}");

    // A running job brings the heartbeats back.
    let h0 = answered(&d, hb).await;
    let id = d
        .submit(
            &d.admin,
            &json!({"command": "sleep 4", "node_id": "agent-a"}),
        )
        .await;
    eventually("heartbeats while the job runs", T, || async {
        (answered(&d, hb).await >= h0 + 2.0).then_some(())
    })
    .await;
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

/// With `--log-format json` every fluxd log line is one JSON object, and at debug level no token
/// (admin, operator, agent, revoked) appears in fluxd's or the agent's logs.
#[tokio::test(flavor = "multi_thread")]
async fn json_logs_never_contain_tokens() {
    let d = Fluxd::start_args(&["--log-format", "json"]).await;
    let agent = d.agent("default", "agent-1", &[]).await;
    let operator = d.token("default", "operator", None).await;
    let (_, job) = d
        .post("/v1/jobs", &operator, &json!({"command": "echo hi"}))
        .await;
    let id = job["job_id"].as_str().unwrap().to_string();
    d.wait_job(&operator, &id, T, terminal).await;
    ok(&d.fluxctl(&d.admin, &["token", "revoke", &operator])).unwrap();
    assert_eq!(d.get("/v1/jobs", &operator).await.0, 401);
    assert_eq!(d.get("/v1/jobs", "Bearer-garbage.x.y").await.0, 401);
    let agent_token = std::fs::read_to_string(d.dir.path().join("agent-1.token")).unwrap();

    let fluxd_log = d.proc.log_text();
    let lines: Vec<&str> = fluxd_log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 5, "{fluxd_log}");
    for l in &lines {
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["level"].is_string() && v["fields"].is_object(), "{l}");
    }
    for (name, log) in [("fluxd", fluxd_log), ("agent", agent.log_text())] {
        for (what, tok) in [
            ("admin", d.admin.as_str()),
            ("operator", operator.as_str()),
            ("agent", agent_token.trim()),
        ] {
            // The signature is the secret part; no third of a token may show.
            let sig = tok.rsplit('.').next().unwrap();
            assert!(
                !log.contains(sig),
                "{what} token signature in the {name} log"
            );
        }
    }
}

/// Secret environment variables reach the job's environment but never its stored output (even
/// printed in pieces across output chunks), the job record, the API or the logs.
#[tokio::test(flavor = "multi_thread")]
async fn secret_env_values_are_masked_and_never_stored_or_logged() {
    let (d, agent) = Fluxd::start_with_agent().await;
    let secret = "hunter2-s3cret-value";
    let cmd = r#"echo "pw=$DB_PASSWORD"; for c in $(echo "$DB_PASSWORD" | fold -w3); do printf %s "$c"; sleep 0.05; done; echo; test ${#DB_PASSWORD} -eq 20"#;
    let job = d
        .admin_job_expect(
            &json!({"command": cmd, "node_id": "agent-1", "secret_env": {"DB_PASSWORD": secret}}),
            202,
        )
        .await;
    assert!(!job.to_string().contains(secret));
    let id = job["job_id"].as_str().unwrap().to_string();
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "the variable was set: {done}");
    assert_eq!(done["secret_env"], json!(["DB_PASSWORD"]));
    assert!(!done.to_string().contains(secret));
    let logs = d.logs(&d.admin, &id).await;
    assert_eq!(logs, "pw=[redacted]\n[redacted]\n");

    // Through fluxctl the value comes from its own environment, not the command line.
    let out = std::process::Command::new(bin("fluxctl"))
        .args([
            "job",
            "run",
            "--wait",
            "-n",
            "agent-1",
            "--secret-env",
            "API_KEY",
            "echo key=$API_KEY",
        ])
        .env("API_KEY", "k3y-from-env")
        .env("FLUX_SERVER", &d.url)
        .env("FLUX_CA", d.ca_path())
        .env("FLUX_TOKEN", &d.admin)
        .env_remove("FLUX_TOKEN_FILE")
        .env_remove("FLUX_CONTEXT")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "key=[redacted]\n");
    // A value too short to mask reliably is refused, without echoing it.
    let v = d
        .admin_job_expect(
            &json!({"command": "true", "secret_env": {"PIN": "123"}}),
            422,
        )
        .await;
    assert!(!v.to_string().contains("123\""), "{v}");

    for (name, log) in [("fluxd", d.proc.log_text()), ("agent", agent.log_text())] {
        assert!(!log.contains(secret), "secret in the {name} log");
        assert!(!log.contains("k3y-from-env"), "secret in the {name} log");
    }
}

/// A real agent sends what is left of a job's output with its result: once the job is
/// finished its output is complete, in order and masked, and the last chunk was stored by the
/// commit that recorded the result (not by an upload of its own before it). The command ends
/// with the beginning of the secret, which the agent holds back until the run ends, so that
/// chunk is always left for the result.
#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_last_output_arrives_with_its_result() {
    let mut d = Fluxd::start().await;
    let agent = d.agent("default", "agent-1", &[]).await;
    let secret = "zq-secret-value-42";
    let cmd = r#"echo "pw=$PW"; echo to-stderr >&2; printf 'end:zq-sec'"#;
    let id = d
        .submit(
            &d.admin,
            &json!({"command": cmd, "node_id": "agent-1", "secret_env": {"PW": secret}}),
        )
        .await;
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    let resp = d.logs_response(&d.admin, &id, "format=jsonl").await;
    assert_eq!(resp.status(), 200);
    let chunks: Vec<Value> = resp
        .text()
        .await
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<u64> = chunks.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(
        seqs,
        (0..chunks.len() as u64).collect::<Vec<_>>(),
        "{chunks:?}"
    );
    let text = |stream: &str| -> String {
        chunks
            .iter()
            .filter(|c| c["stream"] == stream)
            .map(|c| c["data"].as_str().unwrap())
            .collect()
    };
    assert_eq!(text("stdout"), "pw=[redacted]\nend:zq-sec");
    assert_eq!(text("stderr"), "to-stderr\n");

    // The store, read once fluxd has stopped: the last chunk carries the revision of the
    // attempt's finished record.
    drop(agent);
    let status = terminate(&mut d.proc, "fluxd exit", T).await;
    assert!(status.success(), "{status:?}");
    let store = flux_core::store::open(&format!(
        "redb:{}",
        d.data_dir().join("flux.redb").display()
    ))
    .await
    .unwrap();
    let attempt_id = done["current_attempt"].as_str().unwrap();
    let (job_id, n) = flux_core::model::parse_attempt_id(attempt_id).unwrap();
    let key = |path: String| flux_core::store::Key::new("default", path).unwrap();
    let finished = store
        .get(&key(flux_core::keys::attempt(job_id, n)))
        .await
        .unwrap()
        .unwrap();
    let stored = store
        .list("default", &flux_core::keys::output(attempt_id))
        .await
        .unwrap();
    assert_eq!(stored.len(), chunks.len());
    let last = stored.last().unwrap();
    assert_eq!(
        last.key.path(),
        flux_core::keys::output_chunk(attempt_id, seqs.len() as u64 - 1)
    );
    assert_eq!(
        last.version, finished.version,
        "the last output chunk was not stored with the result"
    );
}

/// Ids of a listing, in order.
async fn listed(d: &Fluxd, query: &str) -> Vec<String> {
    let (s, v) = d.get(query, &d.admin).await;
    assert_eq!(s, 200, "{query}: {v}");
    v.as_array()
        .unwrap_or_else(|| panic!("{query}: {v}"))
        .iter()
        .map(|j| j["job_id"].as_str().unwrap().to_string())
        .collect()
}

/// The listing indexes follow each job through its life with a real agent (queued, running,
/// cancelled, failed, succeeded); cursors page through all of it once; the reconciler's jobs
/// are apart from users' (and `fluxctl job list` shows users' unless asked).
#[tokio::test(flavor = "multi_thread")]
async fn listings_follow_each_job_through_its_life() {
    let (d, _agent) = Fluxd::start_with_agent().await;
    let dir = tempfile::tempdir().unwrap();
    let (running, _pid) = d.submit_blocking_on("agent-1", dir.path(), T).await;
    assert!(
        listed(&d, "/v1/jobs?status=running")
            .await
            .contains(&running)
    );
    assert!(
        listed(&d, "/v1/jobs?node_id=agent-1&status=running&kind=user")
            .await
            .contains(&running)
    );
    assert!(
        !listed(&d, "/v1/jobs?status=queued")
            .await
            .contains(&running)
    );
    let queued = d
        .submit(
            &d.admin,
            &json!({"command": "true", "node_id": "nowhere", "allow_unknown_node": true}),
        )
        .await;
    assert_eq!(
        listed(&d, "/v1/jobs?status=queued").await,
        vec![queued.clone()]
    );
    assert_eq!(
        listed(&d, "/v1/jobs?node_id=nowhere").await,
        vec![queued.clone()]
    );

    let (s, _) = d
        .post(&format!("/v1/jobs/{running}/cancel"), &d.admin, &json!({}))
        .await;
    assert_eq!(s, 200);
    d.wait_job(&d.admin, &running, T, terminal).await;
    assert_eq!(
        listed(&d, "/v1/jobs?status=cancelled").await,
        vec![running.clone()]
    );
    assert!(listed(&d, "/v1/jobs?status=running").await.is_empty());

    let mut ended = Vec::new();
    for (cmd, status) in [("exit 3", "failed"), ("true", "succeeded")] {
        let id = d.submit(&d.admin, &json!({"command": cmd})).await;
        let done = d.wait_job(&d.admin, &id, T, terminal).await;
        assert_eq!(done["status"], status, "{done}");
        assert_eq!(
            listed(&d, &format!("/v1/jobs?status={status}&kind=user")).await,
            vec![id.clone()]
        );
        assert_eq!(
            listed(&d, &format!("/v1/jobs?status={status}&node_id=agent-1")).await,
            vec![id.clone()]
        );
        ended.push(id);
    }
    let all = listed(&d, "/v1/jobs").await;
    assert_eq!(
        all,
        vec![
            ended[1].clone(),
            ended[0].clone(),
            queued.clone(),
            running.clone()
        ]
    );
    assert_eq!(listed(&d, "/v1/jobs?kind=user").await, all);

    // Page by page through the cursor header: each job once, newest first.
    let mut paged = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let q = match &next {
            Some(c) => format!("/v1/jobs?kind=user&limit=1&cursor={c}"),
            None => "/v1/jobs?kind=user&limit=1".into(),
        };
        let r = d.req(Method::GET, &q, &d.admin).send().await.unwrap();
        assert_eq!(r.status(), 200);
        next = header_text(&r, "x-flux-next-cursor");
        let page: Value = r.json().await.unwrap();
        paged.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        if next.is_none() {
            break;
        }
        assert!(paged.len() <= all.len(), "pagination does not end");
    }
    assert_eq!(paged, all);
    let json_ids = |out: &std::process::Output| -> Vec<String> {
        let v = json_of(out);
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_string())
            .collect()
    };
    let out = d.fluxctl(
        &d.admin,
        &["job", "list", "--limit", "1", "--all", "-o", "json"],
    );
    assert_eq!(json_ids(&out), all);
    let out = d.fluxctl(&d.admin, &["job", "list", "--limit", "2", "-o", "json"]);
    assert_eq!(json_ids(&out), all[..2].to_vec());
    assert!(stderr(&out).contains("--all"), "{}", stderr(&out));

    // The reconciler's checks are its own kind.
    let (s, v) = send(d.req(Method::PUT, "/v1/states/motd", &d.admin).json(
        &json!({"name": "motd", "targets": {"agents": ["agent-1"]}, "check": "true", "apply": "true"}),
    ))
    .await;
    assert_eq!(s, 201, "{v}");
    let theirs = eventually("a reconciler job", T, || async {
        let ids = listed(&d, "/v1/jobs?kind=reconciler").await;
        (!ids.is_empty()).then_some(ids)
    })
    .await;
    let (_, j) = d.get(&format!("/v1/jobs/{}", theirs[0]), &d.admin).await;
    assert_eq!(j["kind"], "reconciler", "{j}");
    assert!(
        listed(&d, "/v1/jobs?kind=user")
            .await
            .iter()
            .all(|id| !theirs.contains(id))
    );
    assert!(listed(&d, "/v1/jobs?kind=all").await.contains(&theirs[0]));
    let out = d.fluxctl(&d.admin, &["job", "list", "--all", "-o", "json"]);
    assert_eq!(json_ids(&out), all, "fluxctl shows users' jobs by default");
    let out = d.fluxctl(
        &d.admin,
        &["job", "list", "--kind", "reconciler", "-o", "json"],
    );
    assert!(json_ids(&out).contains(&theirs[0]));
}
