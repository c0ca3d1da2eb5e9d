//! Rollouts end to end with real agents: `fluxctl job run -l role=web --all --max-concurrency
//! ...` creates a rollout that the leader drives. What each test checks is measured from the
//! side effects the jobs write themselves (start and end times per target), not from the
//! rollout's own record: the concurrency is never exceeded, the error budget stops the run, a
//! failing canary stops it before any other target, pause holds new starts until resume, retry
//! runs only the targets that did not succeed, and bad specs are refused naming their field
//! with nothing created.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const WEB: [&str; 5] = ["w1", "w2", "w3", "w4", "w5"];

/// `fluxctl -o json job run -l role=web --all <options> --wait <cmd>` as the admin.
fn rollout_over_web(d: &Fluxd, options: &[&str], cmd: &str) -> Output {
    let mut args = vec!["job", "run", "-l", "role=web", "--all"];
    args.extend(options);
    args.extend(["--wait", cmd]);
    d.fluxctl_json(&d.admin, &args)
}

/// A shell command that records its start and end times under `dir`, sleeps, and exits with
/// `exit` (a shell expression).
fn recording(dir: &Path, sleep: &str, exit: &str) -> String {
    format!(
        "f={d}/$FLUX_NODE_ID; echo start $(date +%s%N) >> $f; sleep {sleep}; echo end $(date +%s%N) >> $f; {exit}",
        d = dir.display()
    )
}

fn rollout_json(o: &std::process::Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(o), stderr(o)))
}

/// Creates the rollout `body` as the admin (answered 201); returns its id.
async fn create_rollout(d: &Fluxd, body: &Value) -> String {
    let r = d.admin_post_expect("/v1/rollouts", body, 201).await;
    r["rollout_id"].as_str().unwrap().to_string()
}

/// The entry of target `node` in the rollout `r`; panics when there is none.
fn target<'a>(r: &'a Value, node: &str) -> &'a Value {
    find_by(&r["targets"], "node_id", node).unwrap()
}

fn states(r: &Value) -> BTreeMap<String, String> {
    field_pairs(&r["targets"], "node_id", "state")
        .into_iter()
        .collect()
}

/// The successful audit records of `action` (method and route) on `object` (the request path).
async fn audited(d: &Fluxd, action: &str, object: &str) -> Vec<Value> {
    let (s, v) = d.get("/v1/audit", &d.admin).await;
    assert_eq!(s, 200, "{v}");
    let recs = v
        .as_array()
        .or_else(|| v["records"].as_array())
        .unwrap_or_else(|| panic!("no records in {v}"));
    recs.iter()
        .map(|r| {
            if r["event"].is_object() {
                &r["event"]
            } else {
                r
            }
        })
        .filter(|e| {
            e["action"] == action
                && e["object"] == object
                && e["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
        })
        .cloned()
        .collect()
}

async fn fleet(d: &Fluxd) -> Vec<Proc> {
    let mut agents = Vec::new();
    for n in WEB {
        agents.push(d.agent("default", n, &["role=web"]).await);
    }
    agents.push(d.agent("default", "db1", &["role=db"]).await);
    agents
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_keeps_its_concurrency_budget_and_canary_measured_from_side_effects() {
    let d = Fluxd::start().await;
    let _agents = fleet(&d).await;

    // 1. Concurrency 2 over 5 targets: every web agent ran once, never more than 2 at once,
    //    and 2 did run at once (the bound is reached, not just respected).
    let dir = tempfile::tempdir().unwrap();
    let cmd = recording(dir.path(), "0.6", "true");
    let o = rollout_over_web(&d, &["--max-concurrency", "2", "--max-errors", "0"], &cmd);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = rollout_json(&o);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert!(states(&r).values().all(|s| s == "succeeded"), "{r}");
    let fx = side_effects(dir.path());
    assert_eq!(
        fx.keys().cloned().collect::<Vec<_>>(),
        WEB.to_vec(),
        "db1 is no target"
    );
    let runs = single_runs(&fx, "run");
    assert_eq!(max_overlap(&runs), 2, "{runs:?}");
    // The rollout's jobs are ordinary jobs of kind rollout, grouped by the rollout id.
    let id = r["rollout_id"].as_str().unwrap();
    let (s, jobs) = d
        .get(&format!("/v1/jobs?group={id}&kind=rollout"), &d.admin)
        .await;
    assert_eq!(s, 200, "{jobs}");
    assert_eq!(jobs.as_array().unwrap().len(), 5, "{jobs}");

    // 2. 20% of 5 rounds up to 1 at once; a budget of 1 error: the second failure stops it.
    //    Exactly two targets ran; exit 3.
    let dir = tempfile::tempdir().unwrap();
    let cmd = recording(dir.path(), "0.1", "exit 1");
    let o = rollout_over_web(&d, &["--max-concurrency", "20%", "--max-errors", "1"], &cmd);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let r = rollout_json(&o);
    assert_eq!(r["status"], "halted", "{r}");
    assert_eq!(r["params"]["max_concurrency"], 1, "{r}");
    let fx = side_effects(dir.path());
    assert_eq!(fx.len(), 2, "only two targets ran: {fx:?}");
    let st = states(&r);
    assert_eq!(st.values().filter(|s| *s == "failed").count(), 2, "{r}");
    assert_eq!(
        st.values().filter(|s| *s == "not_started").count(),
        3,
        "{r}"
    );
    for n in fx.keys() {
        assert_eq!(st[n], "failed", "{n}: {r}");
    }

    // 3. A failing canary stops the rollout before any other target, whatever the budget.
    let dir = tempfile::tempdir().unwrap();
    let cmd = recording(dir.path(), "0.1", "exit 7");
    let o = d.run_all(
        &d.admin,
        "role=web",
        &[
            "--max-concurrency",
            "100%",
            "--max-errors",
            "4",
            "--canary",
            "1",
            "--wait",
            &cmd,
        ],
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let fx = side_effects(dir.path());
    assert_eq!(fx.keys().cloned().collect::<Vec<_>>(), vec!["w1"], "{fx:?}");
    // Not on a terminal: one line per change on stderr, and the per-target table at the end.
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(err.contains("w1 failed"), "{err}");
    assert!(err.contains("a canary failed"), "{err}");
    assert!(
        out.contains("w1 (canary)") && out.contains("not_started"),
        "{out}"
    );

    // 4. Failures within the budget: the rollout runs to its end and exits 1; retry runs only
    //    the failed target, as a new rollout that references the first.
    let dir = tempfile::tempdir().unwrap();
    let cmd = recording(
        dir.path(),
        "0.1",
        "[ \"$FLUX_NODE_ID\" != w3 ] || [ -e $f.fixed ]",
    );
    let o = rollout_over_web(&d, &["--max-concurrency", "5", "--max-errors", "1"], &cmd);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let first = rollout_json(&o);
    assert_eq!(first["status"], "failed", "{first}");
    assert_eq!(states(&first)["w3"], "failed");
    std::fs::write(dir.path().join("w3.fixed"), "").unwrap();
    let first_id = first["rollout_id"].as_str().unwrap();
    let o = d.fluxctl_json(&d.admin, &["rollout", "retry", first_id, "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let second = rollout_json(&o);
    assert_eq!(second["retry_of"], first_id, "{second}");
    assert_eq!(
        states(&second).keys().cloned().collect::<Vec<_>>(),
        vec!["w3"]
    );
    // A rollout is retried once: the first names its retry, and retrying it again (two
    // clients, or one re-sending after a timeout) is a 409 that starts nothing.
    let (s, again) = d.get(&format!("/v1/rollouts/{first_id}"), &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(again["retried_by"], second["rollout_id"], "{again}");
    d.post_expect(
        &format!("/v1/rollouts/{first_id}/retry"),
        &d.admin,
        &serde_json::json!({}),
        409,
    )
    .await;
    // Creation and the retry are audited (the refused second retry is not).
    assert!(
        !audited(&d, "POST /v1/rollouts", "/v1/rollouts")
            .await
            .is_empty(),
        "the creation is not audited"
    );
    let retries = audited(
        &d,
        "POST /v1/rollouts/{id}/retry",
        &format!("/v1/rollouts/{first_id}/retry"),
    )
    .await;
    assert_eq!(retries.len(), 1, "{retries:?}");
    assert_eq!(retries[0]["status"], 201, "{retries:?}");
    let fx = side_effects(dir.path());
    for n in WEB {
        let want = if n == "w3" { 2 } else { 1 };
        assert_eq!(fx[n].len(), want, "{n}: {fx:?}");
    }
    // Both show in the listing, newest first.
    let (s, list) = d.get("/v1/rollouts?limit=2", &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(list[0]["rollout_id"], second["rollout_id"], "{list}");
    assert_eq!(list[1]["rollout_id"], first_id, "{list}");
}

#[tokio::test(flavor = "multi_thread")]
async fn pause_holds_new_starts_until_resume_and_cancel_stops_running_targets() {
    let d = Fluxd::start().await;
    let _agents = fleet(&d).await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let fx = dir.path().join("fx");
    std::fs::create_dir(&fx).unwrap();
    // Each target waits for the gate file (bounded by its timeout).
    let cmd = format!(
        "echo start $(date +%s%N) >> {fx}/$FLUX_NODE_ID; while [ ! -e {gate} ]; do sleep 0.05; done; echo end $(date +%s%N) >> {fx}/$FLUX_NODE_ID",
        fx = fx.display(),
        gate = gate.display()
    );
    let id = create_rollout(
        &d,
        &json!({"command": cmd, "selector": "role=web", "max_concurrency": 2, "timeout_secs": 60}),
    )
    .await;
    eventually("two targets running", T, || async {
        (std::fs::read_dir(&fx).ok()?.count() == 2).then_some(())
    })
    .await;
    let (s, p) = d
        .post(&format!("/v1/rollouts/{id}/pause"), &d.admin, &json!({}))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["status"], "paused");
    std::fs::write(&gate, "").unwrap();
    // The two running targets finish and are recorded; nothing new starts while paused.
    let paused = eventually("the running targets recorded", T, || async {
        let (_, v) = d.get(&format!("/v1/rollouts/{id}"), &d.admin).await;
        (states(&v).values().filter(|s| *s == "succeeded").count() == 2).then_some(v)
    })
    .await;
    assert_eq!(paused["status"], "paused");
    // Several leader passes (a tick is 250 ms) go by: still two side effects only.
    let leader_passes_done = tokio::time::Instant::now() + Duration::from_millis(1500);
    eventually("time for several leader passes", T, || async {
        assert_eq!(
            std::fs::read_dir(&fx).unwrap().count(),
            2,
            "nothing starts while paused"
        );
        (tokio::time::Instant::now() >= leader_passes_done).then_some(())
    })
    .await;
    let (s, v) = d
        .post(&format!("/v1/rollouts/{id}/resume"), &d.admin, &json!({}))
        .await;
    assert_eq!(s, 200, "{v}");
    let done = eventually("the rollout to finish", T, || async {
        let (_, v) = d.get(&format!("/v1/rollouts/{id}"), &d.admin).await;
        (v["status"] == "succeeded").then_some(v)
    })
    .await;
    assert!(states(&done).values().all(|s| s == "succeeded"), "{done}");
    assert_eq!(side_effects(&fx).len(), 5);
    // Pause and resume are in the audit trail.
    let (_, audit) = d.get("/v1/audit", &d.admin).await;
    let text = audit.to_string();
    for action in [
        "POST /v1/rollouts/{id}/pause",
        "POST /v1/rollouts/{id}/resume",
    ] {
        assert!(text.contains(action), "{action} not audited: {text}");
    }
    // A finished rollout cannot be paused.
    let (s, v) = d
        .post(&format!("/v1/rollouts/{id}/pause"), &d.admin, &json!({}))
        .await;
    assert_eq!(s, 409, "{v}");

    // Cancel: the running targets' jobs are cancelled, nothing else starts; exit 130.
    let id = create_rollout(
        &d,
        &json!({"command": "sleep 60", "selector": "role=web", "max_concurrency": "40%"}),
    )
    .await;
    eventually("two targets running", T, || async {
        let (_, v) = d.get(&format!("/v1/rollouts/{id}"), &d.admin).await;
        (states(&v).values().filter(|s| *s == "running").count() == 2).then_some(())
    })
    .await;
    let o = d.fluxctl(&d.admin, &["rollout", "cancel", &id]);
    ok(&o).unwrap();
    let o = d.fluxctl_json(&d.admin, &["rollout", "wait", &id]);
    assert_eq!(o.status.code(), Some(130), "{}", stderr(&o));
    let r = rollout_json(&o);
    let st = states(&r);
    assert_eq!(st.values().filter(|s| *s == "cancelled").count(), 2, "{r}");
    assert_eq!(
        st.values().filter(|s| *s == "not_started").count(),
        3,
        "{r}"
    );
    let cancels = audited(
        &d,
        "POST /v1/rollouts/{id}/cancel",
        &format!("/v1/rollouts/{id}/cancel"),
    )
    .await;
    assert_eq!(
        cancels.len(),
        1,
        "the cancel is not audited once: {cancels:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_rollout_specs_are_refused_naming_the_field_and_create_nothing() {
    let d = Fluxd::start().await;
    let _a = d.agent("default", "w1", &["role=web"]).await;
    for (body, field) in [
        (
            json!({"command": "true", "selector": "role=web", "max_concurrency": "150%"}),
            "max_concurrency",
        ),
        (
            json!({"command": "true", "selector": "role=web", "max_concurrency": "0%"}),
            "max_concurrency",
        ),
        (
            json!({"command": "true", "selector": "role=web", "max_concurrency": 0}),
            "max_concurrency",
        ),
        (
            json!({"command": "true", "selector": "role=web", "max_errors": "101%"}),
            "max_errors",
        ),
        (
            json!({"command": "true", "selector": "role=nothing"}),
            "selector",
        ),
        (
            json!({"command": "true", "selector": "role=web", "max_concurency": 1}),
            "max_concurency",
        ),
        (
            json!({"command": "true", "selector": "role=web", "batch_wait_secs": 999999999}),
            "batch_wait_secs",
        ),
        (json!({"selector": "role=web"}), "command"),
    ] {
        let (s, v) = d.post("/v1/rollouts", &d.admin, &body).await;
        assert!((400..500).contains(&s), "{body}: {s} {v}");
        let m = error_message(&v);
        assert!(m.contains(field), "{body}: {m}");
    }
    let (s, list) = d.get("/v1/rollouts", &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(list, json!([]), "nothing created");
    let (s, jobs) = d.get("/v1/jobs?kind=all", &d.admin).await;
    assert_eq!(s, 200);
    assert_eq!(jobs, json!([]), "no job created");
    // A viewer may read but not create; another tenant's rollout is not found.
    let viewer = d.token("default", "viewer", None).await;
    d.post_expect(
        "/v1/rollouts",
        &viewer,
        &json!({"command": "true", "selector": "role=web"}),
        403,
    )
    .await;
    let id = create_rollout(&d, &json!({"command": "true", "selector": "role=web"})).await;
    let other = d.token("other", "admin", None).await;
    let (s, _) = d.get(&format!("/v1/rollouts/{id}"), &other).await;
    assert_eq!(s, 404);
    // The CLI says the same before anything is sent for a bad limit.
    let o = d.run_all(&d.admin, "role=web", &["--max-concurrency", "0", "true"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("max_concurrency"), "{}", stderr(&o));
}

/// A target offline at its turn is skipped (an error only with --offline-is-error), a failed
/// verify is an error, and a target over its timeout is an error.
#[tokio::test(flavor = "multi_thread")]
async fn offline_targets_are_skipped_and_verify_and_timeout_failures_are_errors() {
    let d = Fluxd::start_with(FluxdOpts::fast_liveness()).await;
    let _w1 = d.agent("default", "w1", &["role=web"]).await;
    let mut w2 = d.agent("default", "w2", &["role=web"]).await;
    let _w3 = d.agent("default", "w3", &["role=web"]).await;
    w2.kill9();
    d.wait_agent_state(&d.admin, "w2", "unreachable", T).await;
    let dir = tempfile::tempdir().unwrap();
    let run = format!(
        "[ \"$FLUX_NODE_ID\" = w3 ] || touch {d}/$FLUX_NODE_ID",
        d = dir.path().display()
    );
    let verify = format!("test -e {d}/$FLUX_NODE_ID", d = dir.path().display());
    let o = rollout_over_web(
        &d,
        &[
            "--max-concurrency",
            "1",
            "--max-errors",
            "5",
            "--verify",
            &verify,
        ],
        &run,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = rollout_json(&o);
    let st = states(&r);
    assert_eq!(st["w1"], "succeeded", "{r}");
    assert_eq!(st["w2"], "skipped", "{r}");
    assert_eq!(st["w3"], "failed", "{r}");
    let w3 = target(&r, "w3");
    assert_eq!(w3["error"], "verify: exit code 1", "{r}");
    // With --offline-is-error and no budget the skipped target stops the rollout.
    let o = rollout_over_web(
        &d,
        &["--max-concurrency", "1", "--offline-is-error"],
        "true",
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let st = states(&rollout_json(&o));
    assert_eq!(st["w2"], "skipped");
    assert_eq!(st["w3"], "not_started");
    // A target over its timeout is an error.
    let o = rollout_over_web(
        &d,
        &[
            "--max-concurrency",
            "2",
            "--max-errors",
            "5",
            "--timeout",
            "1s",
        ],
        "if [ \"$FLUX_NODE_ID\" = w1 ]; then sleep 30; fi",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = rollout_json(&o);
    let w1 = target(&r, "w1");
    assert_eq!(w1["state"], "failed", "{r}");
    assert_eq!(w1["error"], "timed out", "{r}");
    assert_eq!(states(&r)["w3"], "succeeded", "{r}");
}

/// `examples/rollout.sh` works against a live control plane as documented: exit 0 when every
/// target succeeded, 3 with the retry hint when the canary fails.
#[tokio::test(flavor = "multi_thread")]
async fn the_rollout_example_script_follows_a_rollout_and_reports_it() {
    let d = Fluxd::start().await;
    let _a = d.agent("default", "w1", &["role=web"]).await;
    let _b = d.agent("default", "w2", &["role=web"]).await;
    let operator = d.token("default", "operator", None).await;
    let run = |cmd: &str| {
        d.example("rollout.sh", &operator)
            .arg(cmd)
            .env("BATCH_WAIT", "0s")
            .output()
            .unwrap()
    };
    let o = run("true");
    assert_eq!(o.status.code(), Some(0), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("every target succeeded"),
        "{}",
        stdout(&o)
    );
    let o = run("false");
    assert_eq!(o.status.code(), Some(3), "{}\n{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("fluxctl rollout retry r-"),
        "{}",
        stderr(&o)
    );
}

/// A tenant's `rollout_above`: `--all` over more agents than that, without rollout options,
/// runs as a rollout with safe defaults (one canary, 10% at once, no error tolerated) instead
/// of everywhere at once; at or below it, it stays a plain fan-out.
#[tokio::test(flavor = "multi_thread")]
async fn rollout_above_turns_a_wide_fan_out_into_a_safe_rollout() {
    let d = Fluxd::start().await;
    let _agents = fleet(&d).await;
    let o = d.fluxctl(
        &d.admin,
        &["tenants", "quota", "set", "default", "--rollout-above", "3"],
    );
    ok(&o).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cmd = recording(dir.path(), "0.2", "true");
    let o = rollout_over_web(&d, &[], &cmd);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("rollout_above (3)"), "{}", stderr(&o));
    let r = rollout_json(&o);
    assert_eq!(r["params"]["max_concurrency"], 1, "{r}");
    assert_eq!(r["params"]["max_errors"], 0, "{r}");
    assert_eq!(r["params"]["canary"], 1, "{r}");
    let mut runs: Vec<(u128, u128)> = side_effects(dir.path())
        .values()
        .map(|v| (v[0].0, v[0].1.unwrap()))
        .collect();
    assert_eq!(runs.len(), 5);
    assert_eq!(max_overlap(&runs), 1, "{runs:?}");
    runs.clear();
    // One agent (db1) is not above the setting: a plain fan-out.
    let o = d.fluxctl_json(&d.admin, &["job", "run", "-l", "role=db", "--all", "true"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["group"].is_string(), "{v}");
}

/// Finished rollouts are collected after the job retention; an unfinished one is kept.
#[tokio::test(flavor = "multi_thread")]
async fn finished_rollouts_are_collected_after_the_retention_and_running_ones_kept() {
    let d = Fluxd::start_args(&["--job-retention", "1s", "--gc-interval", "200ms"]).await;
    let _a = d.agent("default", "w1", &["role=web"]).await;
    let _b = d.agent("default", "w2", &["role=web"]).await;
    let done_id = create_rollout(&d, &json!({"command": "true", "nodes": ["w1"]})).await;
    let long_id = create_rollout(&d, &json!({"command": "sleep 30", "nodes": ["w2"]})).await;
    eventually("the finished rollout collected", T, || async {
        (d.get(&format!("/v1/rollouts/{done_id}"), &d.admin).await.0 == 404).then_some(())
    })
    .await;
    let (s, v) = d.get(&format!("/v1/rollouts/{long_id}"), &d.admin).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "running", "{v}");
}
