//! The agent's security properties end to end, on real `fluxd` and `flux-agent` processes:
//! jobs cannot read their agent's token, a second agent token for a live node neither
//! registers nor sees secrets nor acts for the real agent's attempts, output is capped by what
//! it takes in the store and gathered into few chunks, and agent fields are bounded.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use flux_core::backup;
use flux_tests::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);
const SESSION: &str = "X-Flux-Session";

/// POST with an agent token and, if given, a session.
async fn agent_post(
    d: &Fluxd,
    path: &str,
    token: &str,
    session: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    let mut rb = d.req(Method::POST, path, token).json(body);
    if let Some(s) = session {
        rb = rb.header(SESSION, s);
    }
    send(rb).await
}

/// An agent token for `node` and the session its registration (as a raw client) opened.
async fn register_raw(d: &Fluxd, node: &str) -> (String, Option<String>) {
    let token = d.token("default", "agent", Some(node)).await;
    let (s, v) = agent_post(d, "/v1/agent/register", &token, None, &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let session = v["session"].as_str().map(str::to_string);
    (token, session)
}

/// Registers raw agent `node` ([`register_raw`]), submits `true` pinned to it and waits for its
/// first attempt; returns the agent's token and session, the job's id and the attempt's id.
async fn raw_attempt(d: &Fluxd, node: &str) -> (String, Option<String>, String, String) {
    let (token, session) = register_raw(d, node).await;
    let job_id = d
        .submit(&d.admin, &json!({"command": "true", "node_id": node}))
        .await;
    let attempt = first_attempt(d, &token, session.as_deref()).await;
    (token, session, job_id, attempt)
}

/// Waits for the first task in the agent's inbox; returns its attempt id.
async fn first_attempt(d: &Fluxd, token: &str, session: Option<&str>) -> String {
    eventually("the task", T, || async {
        let (s, body) = agent_tasks(d, token, session).await;
        let tasks: Value = serde_json::from_str(&body).ok()?;
        (s == 200)
            .then(|| tasks[0]["attempt_id"].as_str().map(str::to_string))
            .flatten()
    })
    .await
}

async fn agent_tasks(d: &Fluxd, token: &str, session: Option<&str>) -> (u16, String) {
    let mut rb = d.req(Method::GET, "/v1/agent/tasks?after=0&wait_secs=0", token);
    if let Some(s) = session {
        rb = rb.header(SESSION, s);
    }
    let r = rb.send().await.expect("tasks request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

/// Submits `command` to `node` and waits until it runs; returns the job id and its attempt.
async fn run_on(d: &Fluxd, node: &str, command: &str, extra: Value) -> (String, String) {
    let mut body = json!({"command": command, "node_id": node});
    if let (Value::Object(b), Value::Object(x)) = (&mut body, extra) {
        b.extend(x);
    }
    let id = d.submit(&d.admin, &body).await;
    let job = d
        .wait_job(&d.admin, &id, T, |v| {
            v["status"] == "running" || terminal(v)
        })
        .await;
    let attempt = job["current_attempt"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (id, attempt)
}

/// Output chunks of `attempt` as the store holds them: how many, and the bytes they take
/// (key and record), read from a backup of the whole store.
async fn stored_output(d: &Fluxd, attempt: &str) -> (usize, usize) {
    let r = d.get_response("/v1/backup", &d.admin).await;
    assert_eq!(r.status().as_u16(), 200);
    let b = backup::inspect(&r.bytes().await.unwrap()).expect("a readable backup");
    let prefix = format!("output/{attempt}/");
    b.entries
        .iter()
        .filter(|e| e.key.path().starts_with(&prefix))
        .fold((0, 0), |(n, bytes), e| {
            (n + 1, bytes + e.key.path().len() + e.value.len())
        })
}

/// A second agent token for a live node is refused registration, gets no tasks (so no secret
/// values) and cannot start, feed or finish the real agent's attempt; once the real agent is
/// dead, the node can be registered again.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_agent_token_for_a_live_node_cannot_register_see_secrets_or_act() {
    let d = Fluxd::start_with(FluxdOpts::fast_liveness()).await;
    let real = d.agent("default", "web-1", &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let (job, attempt) = run_on(
        &d,
        "web-1",
        &format!("echo $$ > {}; echo real; exec sleep 600", pidfile.display()),
        json!({"secret_env": {"DBPW": "hunter2222"}, "max_attempts": 1}),
    )
    .await;
    let job_pid = read_pid(&pidfile, T).await;
    let second = d.token("default", "agent", Some("web-1")).await;

    let (s, v) = agent_post(&d, "/v1/agent/register", &second, None, &json!({})).await;
    assert_eq!(s, 409, "a second live registration: {v}");
    assert_eq!(v["error"]["code"], "session_conflict", "{v}");
    assert!(v.get("session").is_none(), "{v}");
    for session in [None, Some("00".repeat(32))] {
        let (s, body) = agent_tasks(&d, &second, session.as_deref()).await;
        assert_eq!(s, 409, "tasks with session {session:?}: {body}");
        assert!(!body.contains("hunter2222"), "secret leaked: {body}");
        let calls = [
            ("start", json!({})),
            (
                "output",
                json!({"seq": 1, "stream": "stdout", "data": "forged"}),
            ),
            ("result", json!({"outcome": "exited", "exit_code": 0})),
        ];
        for (what, body) in calls {
            let path = format!("/v1/agent/attempts/{attempt}/{what}");
            let (s, v) = agent_post(&d, &path, &second, session.as_deref(), &body).await;
            assert_eq!(s, 409, "{what} by the second token: {v}");
        }
        let (s, v) = agent_post(
            &d,
            "/v1/agent/heartbeat",
            &second,
            session.as_deref(),
            &json!({}),
        )
        .await;
        assert_eq!(s, 409, "heartbeat by the second token: {v}");
    }
    // The real agent's attempt is untouched: still running, only its own output.
    let (s, j) = d.get(&format!("/v1/jobs/{job}"), &d.admin).await;
    assert_eq!((s, j["status"].as_str()), (200, Some("running")), "{j}");
    let logs = d.logs(&d.admin, &job).await;
    assert!(!logs.contains("forged"), "{logs}");

    // Once the real agent is dead, another agent process may hold the node.
    drop(real);
    kill_pid(job_pid);
    let viewer = d.token("default", "viewer", None).await;
    eventually("web-1 dead", T, || async {
        let (s, v) = d.get("/v1/agents/web-1", &viewer).await;
        (s == 200 && v["state"] == "dead").then_some(())
    })
    .await;
    let (s, v) = agent_post(&d, "/v1/agent/register", &second, None, &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let session = v["session"].as_str().expect("a new session").to_string();
    assert_eq!(session.len(), 64, "{v}");
    let (s, body) = agent_tasks(&d, &second, Some(&session)).await;
    assert_eq!(s, 200, "{body}");
    let (s, v) = agent_post(
        &d,
        "/v1/agent/heartbeat",
        &second,
        Some(&session),
        &json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    // The API shows the registration's id, never its secret or the secret's hash.
    let (_, a) = d.get("/v1/agents/web-1", &viewer).await;
    assert!(a["registration"]["id"].is_string(), "{a}");
    assert!(a["registration"].get("secret_sha256").is_none(), "{a}");
    assert!(!a.to_string().contains(&session), "{a}");
}

/// A user jobs can run as: one made for the test when `useradd` works (a member of the
/// supplementary group `fluxjobextra`), else `nobody`.
fn job_user() -> (String, u32) {
    let name = "fluxjobtest";
    let _ = Command::new("groupadd")
        .args(["--system", "fluxjobextra"])
        .output();
    let _ = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/bin/sh", name])
        .output();
    let _ = Command::new("usermod")
        .args(["--append", "--groups", "fluxjobextra", name])
        .output();
    for n in [name, "nobody"] {
        if let Ok(Some(u)) = nix::unistd::User::from_name(n) {
            return (n.to_string(), u.uid.as_raw());
        }
    }
    panic!("no unprivileged user to run jobs as");
}

/// With `--run-as`, a job runs under another uid and can read neither the token file its
/// agent's command line names nor the agent's environment.
#[tokio::test(flavor = "multi_thread")]
async fn with_run_as_jobs_cannot_read_the_agent_token() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: --run-as needs the agent to run as root");
        return;
    }
    let (user, uid) = job_user();
    let d = Fluxd::start().await;
    let _agent = d
        .agent_with_args("default", "web-1", &[], &["--run-as", &user])
        .await;
    let token_file = d.dir.path().join("web-1.token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let cmd = r#"id -u; echo "home=$HOME"; echo "groups=$(id -G)"; echo "gid=$(id -g)"
echo "flux_vars=$(env | grep '^FLUX_' | cut -d= -f1 | sort | tr '\n' ' ')"
f=$(tr '\0' '\n' </proc/$PPID/cmdline | grep -A1 -- --token-file | tail -1)
echo "file=$f"; cat "$f" 2>/dev/null || echo no-token-file
tr '\0' '\n' </proc/$PPID/environ 2>/dev/null || echo no-environ"#;
    let (job, _) = run_on(&d, "web-1", cmd, json!({})).await;
    let done = d.wait_job(&d.admin, &job, T, terminal).await;
    let logs = d.logs(&d.admin, &job).await;
    assert_eq!(done["status"], "succeeded", "{done} {logs}");
    let home = nix::unistd::User::from_name(&user)
        .unwrap()
        .unwrap()
        .dir
        .display()
        .to_string();
    assert!(logs.starts_with(&format!("{uid}\nhome={home}\n")), "{logs}");
    // The user's own groups, supplementary ones included (and none of the agent's).
    let u = nix::unistd::User::from_name(&user).unwrap().unwrap();
    let cname = std::ffi::CString::new(user.as_bytes()).unwrap();
    let mut want: Vec<u32> = nix::unistd::getgrouplist(&cname, u.gid)
        .unwrap()
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    want.sort();
    want.dedup();
    let line = logs
        .lines()
        .find_map(|l| l.strip_prefix("groups="))
        .unwrap_or_default();
    let mut got: Vec<u32> = line
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, want, "{logs}");
    if let Ok(Some(extra)) = nix::unistd::Group::from_name("fluxjobextra")
        && extra.mem.contains(&user)
    {
        assert!(got.contains(&extra.gid.as_raw()), "{logs}");
    }
    assert!(logs.contains(&format!("gid={}\n", u.gid)), "{logs}");
    // Only what the job is told of itself: nothing of the agent's own environment.
    assert!(
        logs.contains("flux_vars=FLUX_ATTEMPT_ID FLUX_JOB_ID FLUX_NODE_ID \n"),
        "{logs}"
    );
    assert!(
        logs.contains(&format!("file={}", token_file.display())),
        "{logs}"
    );
    assert!(logs.contains("no-token-file\n"), "{logs}");
    assert!(logs.contains("no-environ\n"), "{logs}");
    assert!(
        !logs.contains(token.trim()),
        "the job read the token: {logs}"
    );
}

/// A token given through `FLUX_TOKEN` does not stay in the agent's environment: a job of the
/// same user reading `/proc/$PPID/environ` finds the agent's other settings, not the token.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_given_through_the_environment_does_not_stay_there() {
    let d = Fluxd::start().await;
    let token = d.token("default", "agent", Some("env-1")).await;
    let mut cmd = Command::new(bin("flux-agent"));
    cmd.arg("--server")
        .arg(&d.url)
        .args(["--poll-secs", "5"])
        .env("FLUX_TOKEN", &token)
        .env("FLUX_CA", d.ca_path())
        .env_remove("FLUX_TOKEN_FILE");
    let _agent = Proc::spawn("agent env-1", cmd, d.dir.path().join("agent-env-1.log")).unwrap();
    let viewer = d.token("default", "viewer", None).await;
    eventually("env-1 online", T, || async {
        let (s, v) = d.get("/v1/agents/env-1", &viewer).await;
        (s == 200 && v["state"] == "online").then_some(())
    })
    .await;
    let (job, _) = run_on(
        &d,
        "env-1",
        r#"tr '\0' '\n' </proc/$PPID/environ; tr '\0' ' ' </proc/$PPID/cmdline"#,
        json!({}),
    )
    .await;
    let done = d.wait_job(&d.admin, &job, T, terminal).await;
    let logs = d.logs(&d.admin, &job).await;
    assert_eq!(done["status"], "succeeded", "{done} {logs}");
    // The job did read the agent's environment (it runs as the same user here)...
    assert!(
        logs.contains(&format!("FLUX_CA={}", d.ca_path().display())),
        "{logs}"
    );
    // ...which no longer holds the token.
    assert!(!logs.contains("FLUX_TOKEN="), "{logs}");
    assert!(
        !logs.contains(token.trim()),
        "the job read the token: {logs}"
    );
}

/// 3,000 one-byte output chunks cannot store more than the cap, counted in what the chunks
/// take in the store (key and record), not in data bytes.
#[tokio::test(flavor = "multi_thread")]
async fn tiny_output_chunks_cannot_store_more_than_the_cap() {
    const CAP: usize = 4096;
    let d = Fluxd::start_args(&["--output-cap-bytes", &CAP.to_string()]).await;
    let (token, session, job_id, attempt) = raw_attempt(&d, "raw-1").await;
    let base = format!("/v1/agent/attempts/{attempt}");
    let (s, v) = agent_post(
        &d,
        &format!("{base}/start"),
        &token,
        session.as_deref(),
        &json!({}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(300);
    for seq in 0..3000u64 {
        if seq % 100 == 0 {
            // Stay alive, as an agent does, so the attempt is not taken away meanwhile.
            let hb = json!({"running": [attempt.as_str()]});
            let (s, v) =
                agent_post(&d, "/v1/agent/heartbeat", &token, session.as_deref(), &hb).await;
            assert_eq!(s, 200, "{v}");
        }
        let body = json!({"seq": seq, "stream": "stdout", "data": "x"});
        let (s, v) = agent_post(
            &d,
            &format!("{base}/output"),
            &token,
            session.as_deref(),
            &body,
        )
        .await;
        assert_eq!(s, 200, "chunk {seq}: {v}");
        assert!(Instant::now() < deadline, "3000 chunks took too long");
    }
    let (chunks, bytes) = stored_output(&d, &attempt).await;
    assert!(chunks > 0, "nothing stored");
    assert!(
        bytes <= CAP,
        "{chunks} chunks take {bytes} bytes in the store, over the {CAP}-byte cap"
    );
    let (_, attempts) = d
        .get(&format!("/v1/jobs/{job_id}/attempts"), &d.admin)
        .await;
    assert_eq!(attempts[0]["output_bytes"], json!(chunks), "{attempts}");
    assert_eq!(
        attempts[0]["output_dropped"],
        json!(3000 - chunks),
        "{attempts}"
    );
}

/// A job printing many tiny lines over a second is uploaded in few chunks, all of its output
/// kept in order.
#[tokio::test(flavor = "multi_thread")]
async fn the_agent_gathers_tiny_writes_into_few_chunks() {
    let d = Fluxd::start().await;
    let _agent = d.agent("default", "web-1", &[]).await;
    let cmd = "i=0; while [ $i -lt 40 ]; do echo line$i; i=$((i+1)); sleep 0.025; done";
    let (job, attempt) = run_on(&d, "web-1", cmd, json!({})).await;
    let done = d.wait_job(&d.admin, &job, T, terminal).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let logs = d.logs(&d.admin, &job).await;
    let expected: String = (0..40).map(|i| format!("line{i}\n")).collect();
    assert_eq!(logs, expected);
    let (chunks, _) = stored_output(&d, &attempt).await;
    // 40 writes 25 ms apart (1 s and more) with a 200 ms window: a handful of chunks, not 40.
    assert!(
        (1..=12).contains(&chunks),
        "{chunks} chunks for 40 tiny writes"
    );
}

/// Oversized or malformed agent fields are refused with 422 naming the field, and nothing is
/// stored.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_agent_fields_get_422_naming_the_field() {
    let d = Fluxd::start().await;
    let token = d.token("default", "agent", Some("big-1")).await;
    let labels: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases = [
        ("hostname", json!({"hostname": "h".repeat(900_000)})),
        ("version", json!({"version": "v".repeat(100_000)})),
        ("labels", json!({"labels": labels})),
        ("labels.k", json!({"labels": {"k": "v".repeat(300)}})),
        ("labels: key", json!({"labels": {"k".repeat(200): "v"}})),
        ("running[0]", json!({"running": ["../../x.1"]})),
    ];
    for (field, body) in cases {
        let (s, v) = agent_post(&d, "/v1/agent/register", &token, None, &body).await;
        assert_eq!(s, 422, "{field}: {v}");
        let msg = error_message(&v);
        assert!(msg.starts_with(field), "{field}: {msg}");
        assert!(msg.len() < 300, "the error echoes the value: {}", msg.len());
    }
    assert_eq!(d.get("/v1/agents/big-1", &d.admin).await.0, 404);
    // Heartbeats are bounded the same way.
    let (s, v) = agent_post(&d, "/v1/agent/register", &token, None, &json!({})).await;
    assert_eq!(s, 200, "{v}");
    let session = v["session"].as_str().map(str::to_string);
    let (s, v) = agent_post(
        &d,
        "/v1/agent/heartbeat",
        &token,
        session.as_deref(),
        &json!({"running": ["ok.1", "a/b.1"]}),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert!(error_message(&v).starts_with("running[1]"), "{v}");
}

/// A task poll's wait is given in seconds or in milliseconds, not both; a bad value is refused
/// 400 naming the field. A good poll's reply says that it counted as the agent's heartbeat and
/// gives the interval.
#[tokio::test(flavor = "multi_thread")]
async fn a_task_polls_wait_is_checked_and_its_reply_says_it_was_heard() {
    let d = Fluxd::start().await;
    let (tok, session) = register_raw(&d, "poll-1").await;
    let session = session.expect("a session");
    let poll = |query: &str| {
        d.req(
            Method::GET,
            &format!("/v1/agent/tasks?after=0&{query}"),
            &tok,
        )
        .header(SESSION, &session)
        .send()
    };
    for (query, field) in [
        ("wait_secs=1&wait_ms=10", "wait_ms"),
        ("wait_ms=soon", "wait_ms"),
        ("wait_ms=-1", "wait_ms"),
        ("wait_secs=99999999999999999999999", "wait_secs"),
    ] {
        let r = poll(query).await.unwrap();
        assert_eq!(r.status(), 400, "{query}");
        let v: Value = r.json().await.unwrap();
        let msg = error_message(&v);
        assert!(msg.contains(field), "{query}: {field} not named in {v}");
    }
    let r = poll("wait_ms=10").await.unwrap();
    assert_eq!(r.status(), 200);
    let interval = header_text(&r, "x-flux-heartbeat-ms").expect("the poll counted as a heartbeat");
    assert_eq!(interval, "2000", "fluxd's default --heartbeat-interval");
    assert_eq!(r.json::<Value>().await.unwrap(), json!([]));
}

/// A task poll with nothing to deliver answers its headers at once (every refusal it could get
/// has been given) and waits in its body: the task assigned meanwhile is that body. A token
/// revoked during the wait gets no task (tasks carry secret values) but an empty list, and its
/// next poll is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_waiting_poll_answers_at_once_and_waits_in_its_body() {
    let d = Fluxd::start().await;
    let poll = |tok: &str, session: &str| {
        d.req(Method::GET, "/v1/agent/tasks?after=0&wait_secs=25", tok)
            .header(SESSION, session)
            .send()
    };
    let (tok, session) = register_raw(&d, "wait-1").await;
    let session = session.expect("a session");
    let r = headers_within(poll(&tok, &session)).await;
    assert_eq!(r.status(), 200);
    assert!(header_text(&r, "x-flux-heartbeat-ms").is_some());
    assert_eq!(
        header_text(&r, "content-type").as_deref(),
        Some("application/json")
    );
    let job = d
        .submit(&d.admin, &json!({"command": "true", "node_id": "wait-1"}))
        .await;
    let tasks: Value = tokio::time::timeout(T, r.json())
        .await
        .expect("the task")
        .unwrap();
    assert_eq!(tasks[0]["job_id"], job.as_str(), "{tasks}");
    assert!(tasks[0]["attempt_id"].is_string(), "{tasks}");

    let (tok, session) = register_raw(&d, "wait-2").await;
    let session = session.expect("a session");
    let r = headers_within(poll(&tok, &session)).await;
    assert_eq!(r.status(), 200);
    let (s, v) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": tok}))
        .await;
    assert_eq!(s, 200, "{v}");
    d.submit(&d.admin, &json!({"command": "true", "node_id": "wait-2"}))
        .await;
    let tasks: Value = tokio::time::timeout(T, r.json())
        .await
        .expect("the reply")
        .unwrap();
    assert_eq!(tasks, json!([]), "a revoked token's poll got tasks");
    let r = poll(&tok, &session).await.unwrap();
    assert_eq!(r.status(), 401);
}

/// An agent call reads the agent's record once: the session check's read serves the handler
/// too (a task poll that finds nothing reads the record, then its inbox with a range read).
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_call_reads_its_agent_record_once() {
    let d = Fluxd::start().await;
    let (tok, session) = register_raw(&d, "reads-1").await;
    let session = session.expect("a session");
    const N: usize = 200;
    let before = d.store_gets().await;
    for _ in 0..N {
        let (s, body) = agent_tasks(&d, &tok, Some(&session)).await;
        assert_eq!(s, 200, "{body}");
    }
    let reads = d.store_gets().await - before;
    // Background work (the leader's passes, the node record) reads a little meanwhile; two
    // reads of the record per poll would be 2 N.
    assert!(
        reads < (N + N / 2) as f64,
        "{reads} store reads for {N} task polls"
    );
}

/// The reply of `sent` once its headers are in, within 10 s (less than the waits asked).
async fn headers_within(
    sent: impl Future<Output = reqwest::Result<reqwest::Response>>,
) -> reqwest::Response {
    tokio::time::timeout(Duration::from_secs(10), sent)
        .await
        .expect("the headers of a waiting poll within 10 s of a 25 s wait")
        .expect("a reply")
}

/// A copy of a registered agent's token, without the registration's session, is refused before
/// its body is read: it cannot hold the agent pools' permits with slow bodies (and so starve the
/// real agent's heartbeats until the node is declared dead and can be taken over).
#[tokio::test(flavor = "multi_thread")]
async fn a_token_copy_without_the_session_is_refused_before_its_body_is_read() {
    let d = Fluxd::start().await;
    let (tok, session) = register_raw(&d, "web-9").await;
    let session = session.expect("a session");
    for path in [
        "/v1/agent/heartbeat",
        "/v1/agent/attempts/j-x.1/start",
        "/v1/agent/attempts/j-x.1/output",
        "/v1/agent/attempts/j-x.1/result",
    ] {
        for presented in [None, Some("not-the-session")] {
            let mut rb = d
                .req(Method::POST, path, &tok)
                .header("content-type", "application/json")
                .header("content-length", "100")
                .body(reqwest::Body::wrap_stream(
                    futures::stream::once(async { Ok::<_, std::io::Error>("{") })
                        .chain(futures::stream::pending()),
                ));
            if let Some(p) = presented {
                rb = rb.header(SESSION, p);
            }
            let r = tokio::time::timeout(Duration::from_secs(5), rb.send())
                .await
                .unwrap_or_else(|_| panic!("{path} ({presented:?}): no answer before the body"))
                .unwrap();
            assert_eq!(r.status().as_u16(), 409, "{path} ({presented:?})");
        }
    }
    let r = send(d.req(Method::GET, "/v1/agent/tasks?after=0&wait_secs=0", &tok)).await;
    assert_eq!(r.0, 409, "a task poll without the session: {:?}", r.1);
    let (s, v) = agent_post(&d, "/v1/agent/heartbeat", &tok, Some(&session), &json!({})).await;
    assert_eq!(s, 200, "the holder's heartbeat: {v}");
}

/// A result may carry the attempt's last output, within bounds: too much of it is refused
/// with 413, too many or misnumbered chunks with 422, each naming the `output` field and
/// changing nothing; an accepted one stores the output with the result, and the same report
/// sent again stores nothing more.
#[tokio::test(flavor = "multi_thread")]
async fn output_carried_with_a_result_is_bounded_and_stored_once() {
    let d = Fluxd::start().await;
    let (token, session, job_id, attempt) = raw_attempt(&d, "raw-2").await;
    let base = format!("/v1/agent/attempts/{attempt}");
    let post = |path: String, body: Value| {
        let (d, token, session) = (&d, &token, session.clone());
        async move { agent_post(d, &path, token, session.as_deref(), &body).await }
    };
    let (s, v) = post(format!("{base}/start"), json!({})).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = post(
        format!("{base}/output"),
        json!({"seq": 0, "stream": "stdout", "data": "first\n"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    let chunk = |seq: u64, data: &str| json!({"seq": seq, "stream": "stdout", "data": data});
    let big = "x".repeat(200 * 1024);
    let refusals = [
        (json!([chunk(1, &big), chunk(2, &big)]), 413),
        (Value::Array((1..=17).map(|s| chunk(s, "y")).collect()), 422),
        (json!([chunk(1, "a"), chunk(3, "b")]), 422),
    ];
    for (output, status) in refusals {
        let (s, v) = post(
            format!("{base}/result"),
            json!({"outcome": "exited", "exit_code": 0, "output": output}),
        )
        .await;
        assert_eq!(s, status, "{v}");
        let msg = error_message(&v);
        assert!(msg.starts_with("output"), "{v}");
    }
    let (_, j) = d.get(&format!("/v1/jobs/{job_id}"), &d.admin).await;
    assert_eq!(
        j["status"], "running",
        "a refused result changed the job: {j}"
    );
    assert_eq!(stored_output(&d, &attempt).await.0, 1);

    let report = json!({
        "outcome": "exited",
        "exit_code": 0,
        "output": [chunk(0, "REPEATED"), chunk(1, "second\n"), {"seq": 2, "stream": "stderr", "data": "third\n"}],
    });
    for recorded in [true, false] {
        let (s, v) = post(format!("{base}/result"), report.clone()).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["recorded"], recorded, "{v}");
    }
    let (_, j) = d.get(&format!("/v1/jobs/{job_id}"), &d.admin).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(stored_output(&d, &attempt).await.0, 3);
    assert_eq!(d.logs(&d.admin, &job_id).await, "first\nsecond\nthird\n");
}
