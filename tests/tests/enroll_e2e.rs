//! Enrollment, credential renewal, revoke, drain and the refusal of silent waits, with real
//! fluxd and flux-agent processes (and a real Redis where counting across a shared store
//! matters).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use flux_core::testing::{FAST_LIVENESS_ARGS, RedisServer};
use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// Waits (up to `T`) until the credential expiring at `exp` (seconds) has expired.
async fn past_expiry(exp: u64) {
    eventually("the first credential expired", T, || async {
        (flux_core::model::now_ms() / 1000 > exp + 1).then_some(())
    })
    .await;
}

async fn enroll_token(d: &Fluxd, uses: u32, ttl_secs: u64, labels: Value) -> String {
    let v = d
        .admin_post_expect(
            "/v1/tokens",
            &json!({"role": "enroll", "uses": uses, "ttl_secs": ttl_secs, "labels": labels}),
            201,
        )
        .await;
    v["token"].as_str().unwrap().to_string()
}

/// Enrolls `node_id` with `token`; a refusal for load (429) is retried after a pause, as an
/// agent does. Returns the first other answer.
async fn enroll_retrying(d: &Fluxd, token: &str, node_id: &str) -> (u16, Value) {
    loop {
        let (s, v) = d
            .post("/v1/enroll", token, &json!({"node_id": node_id}))
            .await;
        if s != 429 {
            return (s, v);
        }
        // Shed for load: retried after a pause, as an agent does (not a wait for a condition).
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 50 enrollments at once against a 40-use token: exactly 40 get a credential, 10 are told it
/// is used up, each credential works, and the store's count says 40. A refusal for load (429)
/// is retried, as the agent does.
async fn fifty_against_forty(d: &Fluxd) {
    let token = enroll_token(d, 40, 600, json!({"pool": "eu"})).await;
    let calls = (0..50).map(|i| {
        let token = token.clone();
        async move { enroll_retrying(d, &token, &format!("n{i}")).await }
    });
    let answers = futures::future::join_all(calls).await;
    let ok: Vec<&Value> = answers
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, v)| v)
        .collect();
    let used_up = answers
        .iter()
        .filter(|(s, v)| *s == 403 && v["error"]["message"].as_str().unwrap().contains("used up"))
        .count();
    assert_eq!((ok.len(), used_up), (40, 10), "{answers:?}");
    let mut used: Vec<u64> = ok.iter().map(|v| v["used"].as_u64().unwrap()).collect();
    used.sort();
    assert_eq!(used, (1..=40).collect::<Vec<_>>(), "each use counted once");
    // Every credential is its own node's agent token, and works.
    let cred = ok[0]["token"].as_str().unwrap();
    let node = ok[0]["claims"]["node_id"].as_str().unwrap();
    d.post_expect("/v1/agent/register", cred, &json!({}), 200)
        .await;
    let (s, a) = d.get(&format!("/v1/agents/{node}"), &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(a["admin_labels"]["pool"], "eu", "{a}");
    // The one more after: still used up.
    let (s, _) = d
        .post("/v1/enroll", &token, &json!({"node_id": "late"}))
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        d.metric("flux_enrollments_total{result=\"ok\"}").await,
        Some(40.0)
    );
    assert_eq!(
        d.metric("flux_enrollments_total{result=\"used_up\"}").await,
        Some(11.0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_enrollments_against_a_forty_use_token_let_exactly_forty_in_on_redb() {
    let d = Fluxd::start().await;
    fifty_against_forty(&d).await;
}

/// On Redis, through two nodes sharing it: the count is the store's, not a node's; and an
/// agent enrolled through one node renews its credential through the other once the first is
/// killed (every node shares the signing key).
#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_enrollments_against_a_forty_use_token_let_exactly_forty_in_on_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let ttl = ["--agent-credential-ttl", "10s"];
    let first = Fluxd::start_with(FluxdOpts::on_store(&url, &ttl)).await;
    let mut second = Fluxd::start_with(FluxdOpts::peer_of(&first, &url, &ttl)).await;
    let token = enroll_token(&first, 40, 600, json!({})).await;
    let calls = (0..50).map(|i| {
        let (token, node) = (token.clone(), if i % 2 == 0 { &first } else { &second });
        async move { enroll_retrying(node, &token, &format!("r{i}")).await.0 }
    });
    let answers = futures::future::join_all(calls).await;
    let ok = answers.iter().filter(|s| **s == 201).count();
    let used_up = answers.iter().filter(|s| **s == 403).count();
    assert_eq!((ok, used_up), (40, 10), "{answers:?}");
    // And a real agent enrolls through the other node of the same store with a fresh token.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("enroll.token");
    std::fs::write(&file, enroll_token(&first, 1, 600, json!({})).await).unwrap();
    let state = dir.path().join("state");
    let _agent = second.spawn_enrolled_agent(&file, "real-1", &state, &["--server", &first.url]);
    second
        .wait_agent_state(&second.admin, "real-1", "online", T)
        .await;
    eventually("the agent's session kept", T, || async {
        state.join(".session").exists().then_some(())
    })
    .await;
    let cred = state.join(".credential");
    let issued = std::fs::read_to_string(&cred).unwrap();
    let exp = flux_core::auth::peek_claims(&issued).unwrap().exp;
    // The node it enrolled through dies; it renews through the other one.
    second.proc.kill9();
    eventually(
        "the credential renewed through the other node",
        T,
        || async {
            let now = std::fs::read_to_string(&cred).ok()?;
            (now.trim() != issued.trim()).then_some(())
        },
    )
    .await;
    past_expiry(exp).await;
    let done = first
        .run_to_end(&json!({"command": "true", "node_id": "real-1"}), T)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
}

/// A real agent enrolls once, keeps its credential private in its state dir, renews it before
/// it expires across a fluxd restart, and after a restart of its own uses the kept credential
/// (the one-use token is spent, so enrolling again would be refused).
#[tokio::test(flavor = "multi_thread")]
async fn an_enrolled_agent_renews_its_credential_across_a_fluxd_restart_and_never_enrolls_twice() {
    let ttl = ["--agent-credential-ttl", "10s"];
    let mut d = Fluxd::start_args(&ttl).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("enroll.token");
    std::fs::write(
        &file,
        enroll_token(&d, 1, 600, json!({"role": "web"})).await,
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut agent = d.spawn_enrolled_agent(&file, "web-1", &state, &[]);
    d.wait_agent_state(&d.admin, "web-1", "online", T).await;
    let cred = state.join(".credential");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&cred), 0o600);
    assert_eq!(mode(&state), 0o700);
    let first = std::fs::read_to_string(&cred).unwrap();
    let first_exp = flux_core::auth::peek_claims(&first).unwrap().exp;
    let (_, a) = d.get("/v1/agents/web-1", &d.admin).await;
    assert_eq!(a["admin_labels"]["role"], "web", "{a}");

    // fluxd restarts before the renewal is due (at two thirds of 10 s), once the agent holds
    // its registration (its session kept: the answer to its registration has arrived).
    eventually("the agent's session kept", T, || async {
        state.join(".session").exists().then_some(())
    })
    .await;
    d.proc.kill9();
    d.start_again(&ttl).await;
    // The agent renews through the restarted node, and keeps the new credential.
    let renewed = eventually("the credential renewed", T, || async {
        let now = std::fs::read_to_string(&cred).ok()?;
        (now.trim() != first.trim()).then_some(now)
    })
    .await;
    assert!(flux_core::auth::peek_claims(&renewed).unwrap().exp > first_exp);
    // Past the first credential's expiry the agent still works.
    past_expiry(first_exp).await;
    let done = d
        .run_to_end(&json!({"command": "echo renewed", "node_id": "web-1"}), T)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // The agent restarts: it uses the kept credential (its one-use token is spent).
    agent.kill9();
    let _again = d.spawn_enrolled_agent(&file, "web-1", &state, &[]);
    let done = d
        .run_to_end(&json!({"command": "echo back", "node_id": "web-1"}), T)
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let audit = d.get("/v1/audit", &d.admin).await.1.to_string();
    assert!(audit.contains("POST /v1/enroll"), "enrollment audited");
    assert!(audit.contains("POST /v1/agent/renew"), "renewal audited");
}

/// `fluxctl agents revoke`: the agent is refused at once (its process exits), counted dead,
/// and its running attempt is requeued onto another agent.
#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_agent_is_refused_and_its_attempts_are_requeued() {
    let d = Fluxd::start_with(FluxdOpts::fast_liveness()).await;
    let mut a1 = d.agent("default", "a1", &[]).await;
    let _a2 = d.agent("default", "a2", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (id, orphan) = d.submit_blocking_on("a1", dir.path(), T).await;
    let out = d.fluxctl(&d.admin, &["agents", "revoke", "a1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // Refused: the agent's next call is a 401 and it stops.
    assert!(
        flux_core::testing::wait_until(T, || a1.try_exit().is_some()),
        "the revoked agent did not stop"
    );
    assert!(a1.log_text().contains("refused"), "{}", a1.log_text());
    kill_pid(orphan);
    // Its attempt is requeued and runs on a2.
    let done = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["agent"], "a2", "{done}");
    let (_, a) = d.get("/v1/agents/a1", &d.admin).await;
    assert_eq!(a["state"], "dead", "{a}");
    assert!(a["revoked_at"].is_u64(), "{a}");
    let listed = d.fluxctl(&d.admin, &["agents", "list"]);
    assert!(
        stdout(&listed).contains("dead,revoked"),
        "{}",
        stdout(&listed)
    );
    // Its old token is refused on every call.
    let token = std::fs::read_to_string(d.dir.path().join("a1.token")).unwrap();
    d.post_expect("/v1/agent/register", token.trim(), &json!({}), 401)
        .await;
}

/// `fluxctl agents drain`: the running job finishes, a new one waits (with a warning), and
/// `uncordon` lets it run; `--wait-timeout` gives up on it meanwhile with exit 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_drained_agent_finishes_its_work_takes_no_new_work_until_uncordoned() {
    let d = Fluxd::start().await;
    let _a1 = d.agent("default", "a1", &["role=web"]).await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let cmd = format!(
        "while [ ! -e {} ]; do sleep 0.05; done; echo finished",
        go.display()
    );
    let running = d
        .submit(&d.admin, &json!({"command": cmd, "node_id": "a1"}))
        .await;
    d.wait_job(&d.admin, &running, T, |j| j["status"] == "running")
        .await;
    let out = d.fluxctl(&d.admin, &["agents", "drain", "a1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed = d.fluxctl(&d.admin, &["agents", "list"]);
    assert!(
        stdout(&listed).contains("online,drained"),
        "{}",
        stdout(&listed)
    );
    let (_, json_list) = d.get("/v1/agents", &d.admin).await;
    assert_eq!(json_list[0]["drained"], true, "{json_list}");

    // New work: pinned or by selector, it waits; the submission says why.
    let pinned = d
        .admin_job_expect(&json!({"command": "echo pinned", "node_id": "a1"}), 202)
        .await;
    assert!(
        pinned["warnings"].to_string().contains("drained"),
        "{pinned}"
    );
    let pinned = pinned["job_id"].as_str().unwrap().to_string();
    let any = d
        .submit(
            &d.admin,
            &json!({"command": "echo any", "selector": {"role": "web"}}),
        )
        .await;
    let (s, fan) = d
        .post(
            "/v1/jobs",
            &d.admin,
            &json!({"command": "true", "selector": {"role": "web"}, "fan_out": true}),
        )
        .await;
    assert_eq!(s, 422, "a fan-out skips drained agents: {fan}");
    // --wait-timeout gives up on a job that cannot start.
    let started = std::time::Instant::now();
    let waited = d.fluxctl(
        &d.admin,
        &[
            "job",
            "run",
            "--wait",
            "--wait-timeout",
            "2s",
            "-n",
            "a1",
            "true",
        ],
    );
    assert_eq!(waited.status.code(), Some(1), "{}", stderr(&waited));
    assert!(
        stderr(&waited).contains("wait timeout"),
        "{}",
        stderr(&waited)
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // The running job finishes on the drained agent.
    std::fs::write(&go, b"").unwrap();
    let done = d.wait_job(&d.admin, &running, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    for id in [&pinned, &any] {
        let (_, j) = d.get(&format!("/v1/jobs/{id}"), &d.admin).await;
        assert_eq!(j["status"], "queued", "{j}");
    }
    let out = d.fluxctl(&d.admin, &["agents", "uncordon", "a1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    for id in [&pinned, &any] {
        let j = d.wait_job(&d.admin, id, T, terminal).await;
        assert_eq!(j["status"], "succeeded", "{j}");
    }
}

/// A job for a node nobody enrolled as is refused (or queued with --allow-unknown-node), and
/// `job run --wait` on a dead agent gives up with exit 1 instead of waiting for ever; a
/// selector nothing matches is warned about on stderr.
#[tokio::test(flavor = "multi_thread")]
async fn no_silent_waits_ghost_nodes_are_refused_and_waits_on_dead_agents_end() {
    let d = Fluxd::start_with(FluxdOpts::fast_liveness()).await;
    let ghost = d.fluxctl(&d.admin, &["job", "run", "--wait", "-n", "ghost", "true"]);
    assert_eq!(ghost.status.code(), Some(1), "{}", stderr(&ghost));
    assert!(stderr(&ghost).contains("node_id"), "{}", stderr(&ghost));
    let queued = d.fluxctl(
        &d.admin,
        &["job", "run", "--allow-unknown-node", "-n", "ghost", "true"],
    );
    assert!(queued.status.success(), "{}", stderr(&queued));
    assert!(stderr(&queued).contains("warning"), "{}", stderr(&queued));
    let nothing = d.fluxctl(&d.admin, &["job", "run", "-l", "role=nothing", "true"]);
    assert!(nothing.status.success(), "{}", stderr(&nothing));
    assert!(
        stderr(&nothing).contains("selector: no live agent"),
        "{}",
        stderr(&nothing)
    );

    let mut a1 = d.agent("default", "a1", &[]).await;
    a1.kill9();
    d.wait_agent_state(&d.admin, "a1", "dead", T).await;
    let started = std::time::Instant::now();
    let dead = d.fluxctl(&d.admin, &["job", "run", "--wait", "-n", "a1", "true"]);
    assert_eq!(dead.status.code(), Some(1), "{}", stderr(&dead));
    assert!(stderr(&dead).contains("which is dead"), "{}", stderr(&dead));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(FAST_LIVENESS_ARGS.len() % 2, 0);
}

/// 50 real agents started at once with one 40-use token file: exactly 40 enroll and come
/// online (each with the token's labels as admin labels); the other 10 exit, saying the token
/// is used up.
#[tokio::test(flavor = "multi_thread")]
async fn fifty_real_agents_started_at_once_against_a_forty_use_token_let_forty_in() {
    let d = Fluxd::start().await;
    let token = enroll_token(&d, 40, 600, json!({"pool": "eu"})).await;
    let file = d.dir.path().join("enroll.token");
    std::fs::write(&file, &token).unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut agents: Vec<Proc> = (0..50)
        .map(|i| {
            let state = d.dir.path().join(format!("state-r{i}"));
            d.spawn_enrolled_agent(&file, &format!("r{i}"), &state, &[])
        })
        .collect();
    let online = || async {
        let (s, v) = d.get("/v1/agents", &d.admin).await;
        assert_eq!(s, 200, "{v}");
        v.as_array()
            .unwrap()
            .iter()
            .filter(|a| a["state"] == "online")
            .cloned()
            .collect::<Vec<Value>>()
    };
    eventually("40 agents online", Duration::from_secs(90), || async {
        (online().await.len() >= 40).then_some(())
    })
    .await;
    eventually("10 agents to give up", Duration::from_secs(60), || {
        let exited = agents.iter_mut().filter_map(|p| p.try_exit()).count();
        async move { (exited == 10).then_some(()) }
    })
    .await;
    let up = online().await;
    assert_eq!(up.len(), 40);
    assert!(
        up.iter().all(|a| a["admin_labels"]["pool"] == "eu"),
        "{up:?}"
    );
    let refused: Vec<String> = agents
        .iter_mut()
        .filter_map(|p| p.try_exit().map(|_| p.log_text()))
        .collect();
    assert_eq!(refused.len(), 10);
    for log in &refused {
        assert!(log.contains("used up"), "{log}");
    }
}
