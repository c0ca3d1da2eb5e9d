//! Desired state end to end: `fluxctl apply/diff/get/delete` against a real `fluxd` whose leader
//! reconciles real `flux-agent` processes running real shell commands.

use std::path::Path;
use std::time::{Duration, Instant};

use flux_tests::*;
use reqwest::Method;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(30);

/// A state file whose single state makes `<dir>/<agent id>` exist on every `role=web` agent.
fn web_file(dir: &Path, interval: &str) -> String {
    format!(
        r#"# test state
[[state]]
name = "web-marker"
targets = {{ labels = {{ role = "web" }} }}
check = "test -f {dir}/$FLUX_NODE_ID"
apply = "touch {dir}/$FLUX_NODE_ID"
interval = "{interval}"
timeout = "10s"
"#,
        dir = dir.display()
    )
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

async fn state(d: &Fluxd, token: &str, name: &str) -> Value {
    let (s, v) = d.get(&format!("/v1/states/{name}"), token).await;
    assert_eq!(s, 200, "{v}");
    v
}

fn target<'a>(view: &'a Value, agent: &str) -> &'a Value {
    find_by(&view["status"], "agent", agent)
        .unwrap_or_else(|| panic!("no target {agent} in {view}"))
}

/// `diff` reports the pending creation (exit 1), `apply --wait` converges exactly the selected
/// agents (exit 0), `diff` is then clean (exit 0); a file removed by hand on one agent is found
/// by the periodic check and repaired within one interval, and the repair is counted.
#[tokio::test(flavor = "multi_thread")]
async fn apply_converges_the_selected_agents_and_hand_drift_is_repaired() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let _w1 = d.agent("default", "web-1", &["role=web"]).await;
    let _w2 = d.agent("default", "web-2", &["role=web", "dc=eu"]).await;
    let _db = d.agent("default", "db-1", &["role=db"]).await;
    let file = write(work.path(), "state.toml", &web_file(work.path(), "2s"));

    let diff = d.fluxctl(&d.admin, &["diff", "-f", &file]);
    assert_eq!(diff.status.code(), Some(1), "{}", stderr(&diff));
    assert_eq!(stdout(&diff), "+ web-marker (create)\n");

    let out = d.apply_wait(&file, "30s");
    assert!(out.status.success(), "{}\n{}", stdout(&out), stderr(&out));
    assert!(
        stdout(&out).contains("2 of 2 targets compliant, 0 failed"),
        "{}",
        stdout(&out)
    );
    assert!(work.path().join("web-1").exists() && work.path().join("web-2").exists());
    assert!(!work.path().join("db-1").exists(), "a db agent was touched");

    let diff = d.fluxctl(&d.admin, &["diff", "-f", &file]);
    assert_eq!(diff.status.code(), Some(0), "{}", stdout(&diff));
    assert_eq!(stdout(&diff), "");

    let view = state(&d, &d.admin, "web-marker").await;
    let agents = field_strs(&view["status"], "agent");
    assert_eq!(agents, vec!["web-1", "web-2"]);
    let repairs_before = target(&view, "web-2")["repairs"].as_u64().unwrap();

    // Drift by hand on web-2.
    std::fs::remove_file(work.path().join("web-2")).unwrap();
    let removed = Instant::now();
    let removed_ms = flux_core::model::now_ms();
    eventually("web-2 repaired", T, || async {
        work.path().join("web-2").exists().then_some(())
    })
    .await;
    let took = removed.elapsed();
    let view = eventually("web-2 compliant again", T, || async {
        let v = state(&d, &d.admin, "web-marker").await;
        let t = target(&v, "web-2");
        (t["status"] == "compliant" && t["repairs"].as_u64() > Some(repairs_before)).then_some(v)
    })
    .await;
    let events = target(&view, "web-2")["events"].as_array().unwrap().clone();
    let kinds: Vec<&str> = events.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert!(
        kinds.ends_with(&["drift", "applying", "repaired"]),
        "{kinds:?}"
    );
    // Found by the next periodic check: within one interval (2 s) of the removal, plus the time
    // the check job itself takes (generous: CI machines are loaded).
    let drift_at = events[events.len() - 3]["at"].as_u64().unwrap();
    assert!(
        drift_at.saturating_sub(removed_ms) <= 2000 + 3000,
        "drift found {} ms after the removal",
        drift_at.saturating_sub(removed_ms)
    );
    assert!(took < Duration::from_secs(15), "repair took {took:?}");
    assert!(d.metric("flux_reconcile_drift_total").await >= Some(2.0));
    assert!(d.metric("flux_reconcile_repairs_total").await >= Some(3.0));
    // The leader recomputes the cluster gauges in the background (every 5 s by default).
    eventually(
        "2 compliant targets in the gauges",
        Duration::from_secs(20),
        || async {
            let metrics = d.metrics_text().await?;
            metrics
                .contains("flux_state_targets{status=\"compliant\"} 2")
                .then_some(())
        },
    )
    .await;

    // The table view names both targets.
    let table = d.fluxctl(&d.admin, &["get", "states", "web-marker"]);
    assert!(table.status.success());
    let text = stdout(&table);
    assert!(
        text.contains("web-1") && text.contains("web-2") && text.contains("compliant"),
        "{text}"
    );
}

/// An apply that fails ends `failed` with its output visible in the state and through fluxctl;
/// `apply --wait` exits non-zero and names the target.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_apply_ends_failed_with_its_output_visible() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let _a = d.agent("default", "agent-1", &[]).await;
    let file = write(
        work.path(),
        "broken.toml",
        r#"[[state]]
name = "broken"
targets = { agents = ["agent-1"] }
check = "false"
apply = "echo cannot-install-package >&2; exit 3"
interval = "1s"
"#,
    );
    apply_fails(&d, &file, "30s", "failed: broken/agent-1: apply exited 3");
    let view = state(&d, &d.admin, "broken").await;
    let t = target(&view, "agent-1");
    assert_eq!(t["status"], "failed");
    assert!(
        t["output"]
            .as_str()
            .unwrap()
            .contains("cannot-install-package"),
        "{t}"
    );
    let detail = d.fluxctl(&d.admin, &["get", "states", "broken"]);
    assert!(
        stdout(&detail).contains("cannot-install-package"),
        "{}",
        stdout(&detail)
    );
    // The failing target backs off: once it has failed twice in a row, its next round is due
    // two intervals after the failure, not one.
    let t = eventually("two failures in a row", T, || async {
        let v = state(&d, &d.admin, "broken").await;
        let t = target(&v, "agent-1").clone();
        (t["failures"].as_u64() >= Some(2) && t["status"] == "failed").then_some(t)
    })
    .await;
    let failures = t["failures"].as_u64().unwrap();
    let failed_at = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|e| e["kind"] == "failed")
        .unwrap()["at"]
        .as_u64()
        .unwrap();
    assert_eq!(
        t["next_check"].as_u64().unwrap() - failed_at,
        1000 << (failures - 1),
        "{t}"
    );
}

/// `diff` lists exactly the pending changes (field by field, with --prune the deletions), as
/// text and as JSON; an invalid file is exit 2 with its file, line and field, and changes
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn diff_reports_exactly_the_pending_changes() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let one = |name: &str, interval: &str| {
        format!(
            "[[state]]\nname = \"{name}\"\ntargets = {{ agents = [\"nobody\"] }}\ncheck = \"true\"\napply = \"true\"\ninterval = \"{interval}\"\n"
        )
    };
    let v1 = write(
        work.path(),
        "v1.toml",
        &format!("{}{}", one("a", "10s"), one("b", "10s")),
    );
    let out = d.fluxctl(&d.admin, &["apply", "-f", &v1]);
    assert!(out.status.success(), "{}", stderr(&out));

    let v2 = write(
        work.path(),
        "v2.toml",
        &format!("{}{}", one("a", "20s"), one("c", "10s")),
    );
    let diff = d.fluxctl(&d.admin, &["diff", "-f", &v2]);
    assert_eq!(diff.status.code(), Some(1));
    let text = stdout(&diff);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("~ a (update from version "), "{text}");
    assert_eq!(lines[1], "    interval: \"10s\" → \"20s\"");
    assert_eq!(lines[2], "+ c (create)");

    let diff = d.fluxctl(&d.admin, &["diff", "-f", &v2, "--prune", "-o", "json"]);
    assert_eq!(diff.status.code(), Some(1));
    let plan: Value = serde_json::from_str(&stdout(&diff)).unwrap();
    let actions = field_pairs(&plan["items"], "name", "action");
    assert_eq!(
        actions,
        vec![
            ("a".to_string(), "update".to_string()),
            ("c".into(), "create".into()),
            ("b".into(), "delete".into())
        ]
    );

    // A dry run changes nothing either.
    let out = d.fluxctl(&d.admin, &["apply", "-f", &v2, "--prune", "--dry-run"]);
    assert!(out.status.success());
    let (_, list) = d.get("/v1/states", &d.admin).await;
    let names = field_strs(&list, "name");
    assert_eq!(names, vec!["a", "b"]);

    let bad = write(
        work.path(),
        "bad.toml",
        &one("a", "10s").replace("interval = \"10s\"", "interval = \"10 parsecs\""),
    );
    let diff = d.fluxctl(&d.admin, &["diff", "-f", &bad]);
    assert_eq!(diff.status.code(), Some(2));
    let err = stderr(&diff);
    assert!(err.contains("bad.toml:6:12: state[0].interval:"), "{err}");
    let out = d.fluxctl(&d.admin, &["apply", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(state(&d, &d.admin, "a").await["spec"]["interval_secs"], 10);
    let missing = d.fluxctl(&d.admin, &["diff", "-f", "/nonexistent/state.toml"]);
    assert_eq!(missing.status.code(), Some(2));
}

/// Prune deletes the caller's undeclared states only: another tenant's states with the same
/// names stay, and are invisible (404) to the first tenant.
#[tokio::test(flavor = "multi_thread")]
async fn prune_removes_only_states_of_the_same_tenant() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let acme = d.token("acme", "operator", None).await;
    let globex = d.token("globex", "operator", None).await;
    let one = |name: &str| {
        format!(
            "[[state]]\nname = \"{name}\"\ntargets = {{ agents = [\"x\"] }}\ncheck = \"true\"\napply = \"true\"\n"
        )
    };
    let both = write(
        work.path(),
        "both.toml",
        &format!("{}{}", one("keep"), one("old")),
    );
    for t in [&acme, &globex] {
        assert!(d.fluxctl(t, &["apply", "-f", &both]).status.success());
    }
    let keep = write(work.path(), "keep.toml", &one("keep"));
    let out = d.fluxctl(&acme, &["apply", "-f", &keep, "--prune"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("- old (delete version "),
        "{}",
        stdout(&out)
    );
    let names = |v: Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(d.get("/v1/states", &acme).await.1), vec!["keep"]);
    assert_eq!(
        names(d.get("/v1/states", &globex).await.1),
        vec!["keep", "old"]
    );
    let (s, _) = d.get("/v1/states/old", &acme).await;
    assert_eq!(s, 404);
    // A viewer may look but not change.
    let viewer = d.token("globex", "viewer", None).await;
    assert_eq!(d.get("/v1/states/old", &viewer).await.0, 200);
    let out = d.fluxctl(&viewer, &["delete", "state", "old"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("403"), "{}", stderr(&out));
    // Deleting through fluxctl with a stale version is refused; with the right one it works.
    let v = d.get("/v1/states/old", &globex).await.1["version"]
        .as_u64()
        .unwrap();
    let out = d.fluxctl(
        &globex,
        &[
            "delete",
            "state",
            "old",
            "--if-version",
            &(v + 1).to_string(),
        ],
    );
    assert!(stderr(&out).contains("412"), "{}", stderr(&out));
    let out = d.fluxctl(
        &globex,
        &["delete", "state", "old", "--if-version", &v.to_string()],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(d.get("/v1/states/old", &globex).await.0, 404);
}

/// The API's own rules: PUT with If-Match is a CAS (412 on a stale version, nothing written);
/// invalid and unknown fields are 422 with the field named; the seed's `POST /states` works as
/// written and its state converges.
#[tokio::test(flavor = "multi_thread")]
async fn states_api_enforces_cas_and_validation_and_keeps_the_seed_route() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let _a = d.agent("default", "agent-1", &[]).await;
    let spec = |check: &str| json!({"name": "s1", "targets": {"agents": ["agent-1"]}, "check": check, "apply": "true", "interval_secs": 60});
    let put = |body: Value, if_match: Option<&str>| {
        let mut rb = d.req(Method::PUT, "/v1/states/s1", &d.admin).json(&body);
        if let Some(m) = if_match {
            rb = rb.header("If-Match", m);
        }
        send(rb)
    };
    let (s, v) = put(spec("true"), None).await;
    assert_eq!(s, 201, "{v}");
    let v1 = v["version"].as_u64().unwrap();
    let (s, v) = put(spec("false"), Some(&(v1 + 7).to_string())).await;
    assert_eq!(s, 412, "{v}");
    assert_eq!(state(&d, &d.admin, "s1").await["spec"]["check"], "true");
    let (s, v) = put(spec("test 1 = 1"), Some(&format!("\"{v1}\""))).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["version"].as_u64().unwrap() > v1);

    let mut bad = spec("true");
    bad["interval_secs"] = json!(0);
    let (s, v) = put(bad, None).await;
    assert_eq!(s, 422);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("interval"),
        "{v}"
    );
    let mut bad = spec("true");
    bad["tenant"] = json!("other");
    let (s, v) = put(bad, None).await;
    assert_eq!(s, 422);
    assert!(error_message(&v).contains("unknown field `tenant`"), "{v}");
    d.admin_post_expect(
        "/v1/states",
        &json!({"toml": "[[state]\nname=", "file": "x.toml"}),
        422,
    )
    .await;

    let marker = work.path().join("seed");
    let (s, v) = d
        .post(
            "/states",
            &d.admin,
            &json!({
                "node_id": "agent-1",
                "check_cmd": format!("test -f {}", marker.display()),
                "apply_cmd": format!("touch {}", marker.display()),
                "desired_exit_code": 0
            }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["state_id"].as_str().unwrap().to_string();
    assert!(v["version"].as_u64().unwrap() > 0);
    eventually("seed state compliant", T, || async {
        let v = state(&d, &d.admin, &id).await;
        (target(&v, "agent-1")["status"] == "compliant").then_some(())
    })
    .await;
    assert!(marker.exists());
}

/// `fluxctl apply -f <file> --wait --timeout <timeout>` exits 1 and says `failure` on stderr.
fn apply_fails(d: &Fluxd, file: &str, timeout: &str, failure: &str) {
    let out = d.apply_wait(file, timeout);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stderr(&out).contains(failure), "{}", stderr(&out));
}

/// `apply --wait` does not hang on targets whose agent cannot run anything: an unregistered
/// agent named in the file is reported at once and the exit code is 1.
#[tokio::test(flavor = "multi_thread")]
async fn wait_gives_up_on_targets_whose_agent_is_missing() {
    let d = Fluxd::start().await;
    let work = tempfile::tempdir().unwrap();
    let file = write(
        work.path(),
        "ghost.toml",
        "[[state]]\nname = \"ghostly\"\ntargets = { agents = [\"ghost\"] }\ncheck = \"true\"\napply = \"true\"\n",
    );
    let started = Instant::now();
    apply_fails(
        &d,
        &file,
        "60s",
        "failed: ghostly/ghost: agent is unregistered",
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "waited for a missing agent"
    );
    let view = state(&d, &d.admin, "ghostly").await;
    assert_eq!(target(&view, "ghost")["agent_state"], "unregistered");
}
