//! The event stream end to end (`GET /v1/events`, `fluxctl events`) against a real `fluxd`
//! with real agents: every event type arrives, in revision order; a stream resumed after a
//! disconnect loses and repeats nothing; a position collected from the log answers 410; each
//! tenant sees only its own events; a reader that stops reading is cut off with `slow_client`.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_core::events::sse::{Parser, SseMessage};
use flux_tests::*;
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// Reads a whole (unfollowed) stream.
/// The `object` of every event in `messages`.
fn objects_of(messages: &[SseMessage]) -> BTreeSet<String> {
    messages
        .iter()
        .map(|m| {
            serde_json::from_str::<Value>(&m.data).unwrap()["object"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect()
}

async fn read_all(d: &Fluxd, token: &str, query: &str) -> (u16, Vec<SseMessage>) {
    let resp = d.get_response(&format!("/v1/events?{query}"), token).await;
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("events body");
    let mut p = Parser::new();
    (status, p.feed(&body))
}

/// Follows a stream in the background, collecting every message until dropped.
struct Follower {
    got: Arc<Mutex<Vec<SseMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    async fn start(d: &Fluxd, token: &str, query: &str, last_id: Option<&str>) -> Follower {
        let mut rb = d.req(Method::GET, &format!("/v1/events?{query}"), token);
        if let Some(id) = last_id {
            rb = rb.header("Last-Event-ID", id);
        }
        let resp = rb.send().await.expect("events request");
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let task = tokio::spawn(async move {
            let mut body = resp.bytes_stream();
            let mut p = Parser::new();
            while let Some(Ok(piece)) = body.next().await {
                sink.lock().unwrap().extend(p.feed(&piece));
            }
        });
        Follower { got, task }
    }

    fn messages(&self) -> Vec<SseMessage> {
        self.got.lock().unwrap().clone()
    }

    fn types(&self) -> BTreeSet<String> {
        self.messages().into_iter().map(|m| m.event).collect()
    }

    /// Waits until the stream has shown every one of `types`.
    async fn wait_for(&self, types: &[&str]) {
        eventually(&format!("events {types:?}"), T, || async {
            let seen = self.types();
            types.iter().all(|t| seen.contains(*t)).then_some(())
        })
        .await;
    }

    /// Waits until the stream has shown every event type (of [`flux_core::events::TYPES`]) of
    /// the `kinds`: `state` stands for `state.compliant`, `state.drifted` and the others.
    async fn wait_for_kinds(&self, kinds: &[&str]) {
        let types: Vec<&str> = flux_core::events::TYPES
            .iter()
            .copied()
            .filter(|t| kinds.iter().any(|k| t.split_once('.').unwrap().0 == *k))
            .collect();
        assert!(!types.is_empty(), "no event types of {kinds:?}");
        self.wait_for(&types).await;
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `(revision, index)` of an id.
fn pos(id: &str) -> (u64, u32) {
    let (r, i) = id.split_once('.').expect("REV.INDEX id");
    (r.parse().unwrap(), i.parse().unwrap())
}

fn ids(ms: &[SseMessage]) -> Vec<String> {
    ms.iter().filter_map(|m| m.id.clone()).collect()
}

fn assert_ordered(ms: &[SseMessage]) {
    let ps: Vec<(u64, u32)> = ids(ms).iter().map(|i| pos(i)).collect();
    for w in ps.windows(2) {
        assert!(w[0] < w[1], "ids must grow strictly: {ps:?}");
    }
    for m in ms {
        let v: Value = serde_json::from_str(&m.data).unwrap();
        assert_eq!(v["type"], m.event, "{v}");
        assert_eq!(Some(v["id"].as_str().unwrap()), m.id.as_deref());
        assert_eq!(
            v["revision"].as_u64().unwrap(),
            pos(v["id"].as_str().unwrap()).0
        );
    }
}

async fn put_state(d: &Fluxd, name: &str, node: &str, check: &str, apply: &str) {
    put_state_with(d, name, node, check, apply, None).await;
}

/// Creates state `name` on `node` (checked every second), with the `rollout` table if given.
async fn put_state_with(
    d: &Fluxd,
    name: &str,
    node: &str,
    check: &str,
    apply: &str,
    rollout: Option<Value>,
) {
    let mut body = json!({
        "name": name,
        "targets": {"agents": [node]},
        "check": check,
        "apply": apply,
        "interval_secs": 1,
        "timeout_secs": 10,
    });
    if let Some(r) = rollout {
        body["rollout"] = r;
    }
    let (s, v) = send(
        d.req(Method::PUT, &format!("/v1/states/{name}"), &d.admin)
            .json(&body),
    )
    .await;
    assert_eq!(s, 201, "{v}");
}

/// Makes the rollout and schedule events: a rollout halted by its first failure, one paused
/// and resumed, a schedule whose long runs skip slots and one whose slots are all late (no
/// grace). Returns the two rollouts' ids once the stream showed every such type.
async fn rollouts_and_schedules(d: &Fluxd, live: &Follower) -> (String, String) {
    let _second = d.agent("default", "ev-2", &["role=web"]).await;
    let rollout = |cmd: &'static str| async move {
        let r = d
            .admin_post_expect(
                "/v1/rollouts",
                &json!({"command": cmd, "nodes": ["ev-1", "ev-2"], "max_concurrency": 1,
                        "max_errors": 0, "timeout_secs": 30}),
                201,
            )
            .await;
        r["rollout_id"].as_str().unwrap().to_string()
    };
    let halted = rollout("exit 4").await;
    let paused = rollout("sleep 0.5").await;
    for c in ["pause", "resume"] {
        let (s, v) = d
            .post(&format!("/v1/rollouts/{paused}/{c}"), &d.admin, &json!({}))
            .await;
        assert_eq!(s, 200, "{c}: {v}");
    }
    for (name, extra) in [
        (
            "ev-tick",
            json!({"overlap": "skip", "command": "sleep 1.5"}),
        ),
        (
            "ev-late",
            json!({"grace_secs": 0, "missed": "skip", "command": "true"}),
        ),
    ] {
        let mut body = json!({
            "name": name,
            "cron": "* * * * * *",
            "what": {"job": {"command": extra["command"], "node_id": "ev-1"}},
        });
        for k in ["overlap", "grace_secs", "missed"] {
            if !extra[k].is_null() {
                body[k] = extra[k].clone();
            }
        }
        let (s, v) = d.post("/v1/schedules", &d.admin, &body).await;
        assert_eq!(s, 201, "{name}: {v}");
    }
    live.wait_for_kinds(&["rollout", "schedule"]).await;
    eventually("both rollouts finished", T, || async {
        let done = |id: String| async move {
            let (_, v) = d.get(&format!("/v1/rollouts/{id}"), &d.admin).await;
            v["finished_at"].is_u64()
        };
        (done(halted.clone()).await && done(paused.clone()).await).then_some(())
    })
    .await;
    for name in ["ev-tick", "ev-late"] {
        let (s, _) = send(d.req(Method::DELETE, &format!("/v1/schedules/{name}"), &d.admin)).await;
        assert!(s == 204 || s == 200, "{s}");
    }
    (halted, paused)
}

/// Every event type shows on one followed stream, in strictly growing revision order, with a
/// job's events in its life's order and the exit code on `job.finished`; the unfollowed read of
/// the whole log afterwards holds the same events with the same ids; `fluxctl events -o json
/// --type job.*` prints exactly the job events, one JSON object per line.
#[tokio::test(flavor = "multi_thread")]
async fn every_event_type_arrives_in_revision_order() {
    let mut opts = FluxdOpts::fast_liveness();
    opts.args
        .extend(["--min-schedule-interval", "1s"].map(String::from));
    let d = Fluxd::start_with(opts).await;
    let work = tempfile::tempdir().unwrap();
    let live = Follower::start(&d, &d.admin, "since=0", None).await;
    let mut agent = d.agent("default", "ev-1", &["role=web"]).await;
    let job_id = d
        .submit(
            &d.admin,
            &json!({"command": "exit 3", "node_id": "ev-1", "max_attempts": 1}),
        )
        .await;
    d.wait_job(&d.admin, &job_id, T, terminal).await;
    let marker = work.path().join("marker");
    put_state(
        &d,
        "fixable",
        "ev-1",
        &format!("test -f {}", marker.display()),
        &format!("touch {}", marker.display()),
    )
    .await;
    put_state(&d, "fine", "ev-1", "true", "true").await;
    put_state(&d, "broken", "ev-1", "false", "false").await;
    // A state whose rollout allows no failed repair: its first one halts it.
    put_state_with(
        &d,
        "halting",
        "ev-1",
        "false",
        "false",
        Some(json!({"max_concurrency": 1, "max_errors": 0})),
    )
    .await;
    live.wait_for_kinds(&["state"]).await;
    let doomed = d.token("default", "viewer", None).await;
    let (s, v) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": doomed}))
        .await;
    assert_eq!(s, 200, "{v}");
    let (halted, paused) = rollouts_and_schedules(&d, &live).await;
    agent.kill9();
    live.wait_for(&["agent.unreachable", "agent.dead", "token.revoked"])
        .await;
    let _back = d.agent("default", "ev-1", &["role=web"]).await;
    live.wait_for(flux_core::events::TYPES).await;

    let seen = live.messages();
    assert_ordered(&seen);
    // One job's events, in its life's order, the finish with its exit code.
    let mine: Vec<Value> = seen
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.data).unwrap())
        .filter(|v| v["object"] == job_id.as_str())
        .collect();
    let kinds: Vec<&str> = mine.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["job.submitted", "job.started", "job.finished"]);
    assert_eq!(mine[2]["data"]["exit_code"], 3);
    assert_eq!(mine[2]["data"]["status"], "failed");
    assert_eq!(mine[0]["node_id"], "ev-1");
    // A rollout's events, in its life's order: the first target fails, the budget of no
    // error halts it before the second starts.
    let of = |id: &str| -> Vec<Value> {
        seen.iter()
            .map(|m| serde_json::from_str::<Value>(&m.data).unwrap())
            .filter(|v| v["object"] == id)
            .collect()
    };
    let h = of(&halted);
    let kinds: Vec<&str> = h.iter().map(|v| v["type"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "rollout.created",
            "rollout.target_started",
            "rollout.target_finished",
            "rollout.halted",
            "rollout.finished"
        ]
    );
    assert_eq!(h[2]["data"]["outcome"], "failed");
    assert_eq!(h[2]["data"]["exit_code"], 4);
    assert_eq!(h[4]["data"]["result"], "halted");
    let p = of(&paused);
    let kinds: Vec<&str> = p.iter().map(|v| v["type"].as_str().unwrap()).collect();
    // (The leader may start a target before the pause lands.)
    assert_eq!(kinds[0], "rollout.created");
    let at = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
    assert!(at("rollout.paused") < at("rollout.resumed"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"rollout.finished"));
    assert_eq!(p.last().unwrap()["data"]["result"], "succeeded");
    assert_eq!(
        kinds
            .iter()
            .filter(|k| **k == "rollout.target_finished")
            .count(),
        2
    );
    // A schedule's fired slots grow.
    let slots: Vec<u64> = seen
        .iter()
        .map(|m| serde_json::from_str::<Value>(&m.data).unwrap())
        .filter(|v| v["type"] == "schedule.fired" && v["object"] == "ev-tick")
        .map(|v| v["data"]["slot"].as_u64().unwrap())
        .collect();
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "{slots:?}");

    // The log read afterwards: the same events under the same ids (a prefix of it, as the
    // reconciler goes on).
    let (s, all) = read_all(&d, &d.admin, "follow=false").await;
    assert_eq!(s, 200);
    assert_ordered(&all);
    let (a, b) = (ids(&all), ids(&seen));
    assert_eq!(
        &a[..b.len()],
        &b[..],
        "the live stream and the log disagree"
    );

    // fluxctl: one JSON object per line, only job events.
    let out = d.fluxctl(&d.admin, &["events", "--type", "job.*", "-o", "json"]);
    let text = ok(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert!(lines.len() >= 3, "{text}");
    assert!(
        lines
            .iter()
            .all(|v| v["type"].as_str().unwrap().starts_with("job."))
    );
    let want: Vec<String> = all
        .iter()
        .filter(|m| m.event.starts_with("job."))
        .filter_map(|m| m.id.clone())
        .collect();
    let got: Vec<String> = lines
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        &got[..want.len().min(got.len())],
        &want[..want.len().min(got.len())]
    );
    // Filters by object and by selector.
    let (_, one) = read_all(&d, &d.admin, &format!("follow=false&object={job_id}")).await;
    assert_eq!(one.len(), 3);
    let (_, web) = read_all(
        &d,
        &d.admin,
        "follow=false&type=agent.*&selector=role%3Dweb",
    )
    .await;
    assert!(!web.is_empty() && web.iter().all(|m| m.event.starts_with("agent.")));
    let (_, db) = read_all(&d, &d.admin, "follow=false&selector=role%3Ddb").await;
    assert!(db.is_empty(), "no agent has role=db: {db:?}");
}

/// A followed stream cut after some events and resumed with `Last-Event-ID` (and with
/// `fluxctl events --since`) gives, joined to what came before, exactly the log: nothing lost,
/// nothing twice.
#[tokio::test(flavor = "multi_thread")]
async fn resume_after_a_disconnect_loses_and_repeats_nothing() {
    let d = Fluxd::start().await;
    let submit = |n: usize| {
        let d = &d;
        async move {
            for i in 0..n {
                d.submit(
                    &d.admin,
                    &json!({"command": format!("echo {i}"), "node_id": "nobody", "allow_unknown_node": true}),
                )
                .await;
            }
        }
    };
    let first = Follower::start(&d, &d.admin, "since=0", None).await;
    submit(15).await;
    let got = eventually("15 events", T, || async {
        let m = first.messages();
        (m.len() >= 15).then_some(m)
    })
    .await;
    drop(first);
    // Written while nobody listens.
    submit(10).await;
    let last = got.last().unwrap().id.clone().unwrap();
    let second = Follower::start(&d, &d.admin, "", Some(&last)).await;
    submit(5).await;
    let rest = eventually("the remaining events", T, || async {
        let m = second.messages();
        (got.len() + m.len() >= 30).then_some(m)
    })
    .await;
    let mut joined = got.clone();
    joined.extend(rest);
    assert_ordered(&joined);
    let (_, all) = read_all(&d, &d.admin, "follow=false").await;
    assert_eq!(
        ids(&joined),
        ids(&all),
        "lost or repeated events across the resume"
    );
    assert_eq!(all.len(), 30);
    // A since in the middle of the log gives exactly what follows it.
    let mid = all[11].id.clone().unwrap();
    let (_, after) = read_all(&d, &d.admin, &format!("follow=false&since={mid}")).await;
    assert_eq!(ids(&after), ids(&all[12..]));
    let out = d.fluxctl(&d.admin, &["events", "--since", &mid, "-o", "json"]);
    let text = ok(&out).unwrap();
    let got: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(got, ids(&all[12..]));
}

/// With a log bounded to 5 events, a `since` older than what is kept answers 410 (and
/// `fluxctl events --since` exits 1 saying so), while a recent one still streams.
#[tokio::test(flavor = "multi_thread")]
async fn a_since_older_than_the_log_answers_410() {
    let d = Fluxd::start_args(&["--event-retention-count", "5", "--gc-interval", "1s"]).await;
    for i in 0..20 {
        d.submit(
            &d.admin,
            &json!({"command": format!("echo {i}"), "node_id": "nobody", "allow_unknown_node": true}),
        )
        .await;
    }
    let kept = eventually("the log collected down to 5 events", T, || async {
        let (s, all) = read_all(&d, &d.admin, "follow=false").await;
        (s == 200 && all.len() <= 5).then_some(all)
    })
    .await;
    assert!(!kept.is_empty());
    let (s, v) = d.get("/v1/events?follow=false&since=1", &d.admin).await;
    assert_eq!(s, 410, "{v}");
    assert_eq!(v["error"]["code"], "gone");
    let out = d.fluxctl(&d.admin, &["events", "--since", "1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no longer kept"), "{}", stderr(&out));
    // The oldest kept event's own id still resumes.
    let oldest = kept[0].id.clone().unwrap();
    let (s, after) = read_all(&d, &d.admin, &format!("follow=false&since={oldest}")).await;
    assert_eq!(s, 200);
    assert_eq!(ids(&after), ids(&kept[1..]));
}

/// Each tenant's stream holds its own events only, live and replayed.
#[tokio::test(flavor = "multi_thread")]
async fn each_tenant_sees_only_its_own_events() {
    let d = Fluxd::start().await;
    let (s, v) = d
        .post("/v1/tenants", &d.admin, &json!({"name": "acme"}))
        .await;
    assert!(s == 201 || s == 200, "{v}");
    let acme = d.token("acme", "admin", None).await;
    let acme_live = Follower::start(&d, &acme, "since=0", None).await;
    let default_live = Follower::start(&d, &d.admin, "since=0", None).await;
    let mut mine = BTreeSet::new();
    let mut theirs = BTreeSet::new();
    for (token, set) in [(&acme, &mut mine), (&d.admin, &mut theirs)] {
        for _ in 0..3 {
            let id = d
                .submit(
                    token,
                    &json!({"command": "true", "node_id": "x", "allow_unknown_node": true}),
                )
                .await;
            set.insert(id);
        }
    }
    let objects = |f: &Follower| objects_of(&f.messages());
    eventually("both streams", T, || async {
        (objects(&acme_live).len() >= 3 && objects(&default_live).len() >= 3).then_some(())
    })
    .await;
    assert_eq!(objects(&acme_live), mine);
    assert_eq!(objects(&default_live), theirs);
    let (_, replay) = read_all(&d, &acme, "follow=false").await;
    assert_eq!(objects_of(&replay), mine);
}

/// `child`'s stdout lines, read on a thread.
fn lines(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first line from `rx` satisfying `pred` within `within`.
fn wait_line(
    rx: &std::sync::mpsc::Receiver<String>,
    within: Duration,
    pred: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let left = deadline.checked_duration_since(std::time::Instant::now())?;
        let l = rx.recv_timeout(left).ok()?;
        if pred(&l) {
            return Some(l);
        }
    }
}

fn watch(d: &Fluxd, args: &[&str]) -> std::process::Child {
    std::process::Command::new(bin("fluxctl"))
        .args(args)
        .env("FLUX_SERVER", &d.url)
        .env("FLUX_CA", d.ca_path())
        .env("FLUX_TOKEN", &d.admin)
        .env("FLUX_CONFIG", d.dir.path().join("fluxctl.toml"))
        .env_remove("FLUX_TOKEN_FILE")
        .env_remove("FLUX_CONTEXT")
        .env_remove("FLUX_OUTPUT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn fluxctl")
}

/// `fluxctl job list --watch` and `fluxctl get states --watch` print what happens after their
/// first listing: a job finished and a state converged afterwards show up as event lines.
#[tokio::test(flavor = "multi_thread")]
async fn job_list_and_get_states_watch_show_later_changes() {
    let d = Fluxd::start().await;
    let _a = d.agent("default", "w-1", &[]).await;
    let mut jobs = watch(&d, &["job", "list", "--watch", "-o", "json"]);
    let mut states = watch(&d, &["get", "states", "--watch", "-o", "json"]);
    let (jrx, srx) = (lines(&mut jobs), lines(&mut states));
    // Connected once the first listing (a JSON array) is printed.
    let end_of_listing = |l: &str| l.trim_end() == "]" || l.trim_end() == "[]";
    assert!(
        wait_line(&jrx, T, end_of_listing).is_some(),
        "no job listing"
    );
    assert!(
        wait_line(&srx, T, end_of_listing).is_some(),
        "no state listing"
    );
    let id = d
        .submit(&d.admin, &json!({"command": "true", "node_id": "w-1"}))
        .await;
    let line = wait_line(&jrx, T, |l| {
        l.contains(&id) && l.contains("\"job.finished\"")
    })
    .expect("the job's finish on the watch");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["object"], id.as_str());
    put_state(&d, "watched", "w-1", "true", "true").await;
    let sline = wait_line(&srx, T, |l| {
        l.contains("watched/w-1") && l.contains("\"state.compliant\"")
    })
    .expect("the state's convergence on the watch");
    let v: Value = serde_json::from_str(&sline).unwrap();
    assert_eq!(v["type"], "state.compliant");
    for c in [&mut jobs, &mut states] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A followed stream whose reader stops reading (a 4 KiB receive buffer, so the server's
/// writes back up) while the log grows far past `--events-max-lag` is ended with
/// `event: end` and `reason: slow_client` once it reads again, instead of the server
/// buffering for it; resuming from its last id then loses nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_falls_behind_is_cut_off_with_slow_client() {
    use rustls::pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Fluxd::start_args(&["--events-max-lag", "50"]).await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(d.ca_path()).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    // Small segments keep the server's send buffer small (it is sized in segments).
    nix::sys::socket::setsockopt(&sock, nix::sys::socket::sockopt::TcpMaxSeg, &536).unwrap();
    let tcp = sock.connect(([127, 0, 0, 1], d.port).into()).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        format!(
            "GET /v1/events HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {}\r\n\r\n",
            d.admin
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    // Read the answer's head: the stream is live (it starts at the newest event).
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(T, tls.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "the stream closed before its head");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
    // The log grows by far more than a page and the lag while nothing is read.
    let jobs = 2000;
    futures::stream::iter(0..jobs)
        .for_each_concurrent(32, |i| {
            let d = &d;
            async move {
                let (s, v) = d
                    .post(
                        "/v1/jobs",
                        &d.admin,
                        &json!({"command": format!("echo {i}"), "node_id": "nobody",
                                "allow_unknown_node": true}),
                    )
                    .await;
                assert_eq!(s, 202, "{v}");
            }
        })
        .await;
    // Reading again: the stream ends with slow_client (bounded by the answer's end).
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let Ok(n) = tokio::time::timeout_at(deadline, tls.read(&mut chunk)).await else {
            break;
        };
        let n = n.unwrap_or(0);
        if n == 0 {
            break;
        }
        got.extend_from_slice(&chunk[..n]);
        if got.windows(11).any(|w| w == b"slow_client") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(
        text.contains("event: end") && text.contains("\"reason\":\"slow_client\""),
        "no slow_client end in {} bytes: ...{}",
        got.len(),
        &text[text.len().saturating_sub(400)..]
    );
    // It was sent some events first, fewer than the log holds: it was cut, not served.
    let sent = text.matches("event: job.submitted").count();
    assert!(sent < jobs, "{sent}");
}
