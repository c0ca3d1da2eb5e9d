//! Desired-state rollouts end to end with real agents: a `[[state]]` with a `rollout` table
//! bounds how many of its targets run `apply` at once (measured from the applies' own start and
//! end times), halts remediation once more repairs failed than its `max_errors` (shown in `get
//! states`, no further apply while the reconciler keeps passing), and `fluxctl state resume`
//! restarts it; the rollout table is part of the state for `diff`; bad limits are refused naming
//! the field, with nothing applied.

use std::path::Path;
use std::time::Duration;

use flux_tests::*;
use serde_json::Value;

const T: Duration = Duration::from_secs(60);

fn applies(dir: &Path) -> usize {
    side_effects(dir).values().map(Vec::len).sum()
}

/// A state file: one state over every `role=web` agent whose check fails until `done/<node>`
/// exists, and whose apply records its start and end under `runs/`, sleeps, then `then`.
fn file(work: &Path, rollout: &str, then: &str) -> String {
    let (runs, done) = (work.join("runs"), work.join("done"));
    std::fs::create_dir_all(&runs).unwrap();
    std::fs::create_dir_all(&done).unwrap();
    let text = format!(
        r#"[[state]]
name = "web"
targets = {{ labels = {{ role = "web" }} }}
check = "test -f {done}/$FLUX_NODE_ID"
apply = "f={runs}/$FLUX_NODE_ID; echo start $(date +%s%N) >> $f; sleep 0.4; echo end $(date +%s%N) >> $f; {then}"
interval = "1s"
timeout = "10s"
{rollout}
"#,
        done = done.display(),
        runs = runs.display(),
    );
    let p = work.join("state.toml");
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

async fn view(d: &Fluxd) -> Value {
    let (s, v) = d.get("/v1/states/web", &d.admin).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn fleet(d: &Fluxd, n: usize) -> Vec<Proc> {
    let mut v = Vec::new();
    for i in 1..=n {
        v.push(d.agent("default", &format!("w{i}"), &["role=web"]).await);
    }
    v
}

/// Waits (up to `T`) until the reconciler held back 6 more applies than so far.
async fn more_held_passes(d: &Fluxd) {
    let held = d.metric("flux_reconcile_held_total").await.unwrap_or(0.0);
    d.wait_metric_at_least(
        "more reconcile passes",
        "flux_reconcile_held_total",
        held + 6.0,
        T,
    )
    .await;
}

/// A node with `n` agents `w1`.. labelled `role=web`, and a folder for the test's files.
async fn web_fleet(n: usize) -> (Fluxd, Vec<Proc>, tempfile::TempDir) {
    let d = Fluxd::start().await;
    let agents = fleet(&d, n).await;
    (d, agents, tempfile::tempdir().unwrap())
}

/// Five drifted targets with `max_concurrency = 2`: each is repaired once, never more than two
/// applies run at once (from their own start and end times), and two did run together.
#[tokio::test(flavor = "multi_thread")]
async fn a_states_rollout_bounds_its_concurrent_applies() {
    let (d, _agents, work) = web_fleet(5).await;
    let done = work.path().join("done");
    let f = file(
        work.path(),
        "rollout = { max_concurrency = 2, max_errors = 0 }",
        &format!("touch {}/$FLUX_NODE_ID", done.display()),
    );
    let o = d.apply_wait(&f, "60s");
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    let runs = side_effects(&work.path().join("runs"));
    assert_eq!(runs.len(), 5, "{runs:?}");
    let all = single_runs(&runs, "apply");
    let overlap = max_overlap(&all);
    assert_eq!(overlap, 2, "applies at once: {overlap} ({all:?})");
    let v = view(&d).await;
    assert_eq!(v["rollout"]["max_concurrency"], 2, "{v}");
    assert_eq!(v["rollout"]["halted"], false, "{v}");

    // The rollout table is part of the state: changing it is a change for diff and apply.
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("max_concurrency = 2", "max_concurrency = \"60%\"");
    std::fs::write(&f, text).unwrap();
    let o = d.fluxctl(&d.admin, &["diff", "-f", &f]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("rollout")
            && out.contains("max_concurrency=2")
            && out.contains("max_concurrency=60%"),
        "{out}"
    );
    let o = d.fluxctl(&d.admin, &["apply", "-f", &f]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v = view(&d).await;
    assert_eq!(
        v["rollout"]["max_concurrency"], 3,
        "60% of 5, rounded up: {v}"
    );

    // Resuming a state that is not halted changes nothing, and is no audit record.
    let o = d.fluxctl(&d.admin, &["state", "resume", "web"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("was not halted"), "{}", stdout(&o));
    let (_, audit) = d.get("/v1/audit", &d.admin).await;
    assert!(
        !audit.to_string().contains("/v1/states/web/resume"),
        "{audit}"
    );

    // Bad limits: refused naming the field, nothing applied.
    for (bad, field) in [
        ("max_concurrency = \"150%\"", "rollout.max_concurrency"),
        ("max_concurrency = 0", "rollout.max_concurrency"),
        ("max_errors = \"0%\"", "rollout.max_errors"),
        ("canary = 1", "canary"),
    ] {
        let text = std::fs::read_to_string(&f).unwrap().replace(
            "rollout = { max_concurrency = \"60%\", max_errors = 0 }",
            &format!("rollout = {{ {bad} }}"),
        );
        let p = work.path().join("bad.toml");
        std::fs::write(&p, text).unwrap();
        let o = d.fluxctl(&d.admin, &["apply", "-f", p.to_str().unwrap()]);
        assert!(!o.status.success(), "{bad} was applied");
        assert!(stderr(&o).contains(field), "{bad}: {}", stderr(&o));
        let v = view(&d).await;
        assert_eq!(
            v["rollout"]["max_concurrency"], 3,
            "{bad} changed the state: {v}"
        );
    }
}

/// An apply that always fails, `max_concurrency = 1, max_errors = 1`: remediation halts after
/// two failed repairs, `get states` shows it halted, and while the reconciler goes on passing
/// (its held-back applies counted by `flux_reconcile_held_total`) no further apply runs.
/// `fluxctl state resume` starts it again: two more failures, and it halts again.
#[tokio::test(flavor = "multi_thread")]
async fn failed_repairs_past_the_budget_halt_remediation_until_resumed() {
    let (d, _agents, work) = web_fleet(3).await;
    let runs = work.path().join("runs");
    let f = file(
        work.path(),
        "rollout = { max_concurrency = 1, max_errors = 1 }",
        "exit 4",
    );
    let o = d.fluxctl(&d.admin, &["apply", "-f", &f]);
    assert!(o.status.success(), "{}", stderr(&o));

    let halted = |want_failed: u64| {
        let d = &d;
        async move {
            let v = view(d).await;
            (v["rollout"]["halted"] == true && v["rollout"]["failed_repairs"] == want_failed)
                .then_some(v)
        }
    };
    let v = eventually("remediation halted", T, || halted(2)).await;
    assert!(v["rollout"]["halted_at"].is_u64(), "{v}");
    // Several more passes, each holding back the drifted targets' applies.
    more_held_passes(&d).await;
    // Every apply that started has ended (nothing in flight), and there were exactly two.
    let effects = side_effects(&runs);
    assert!(
        effects.values().flatten().all(|r| r.1.is_some()),
        "{effects:?}"
    );
    assert_eq!(applies(&runs), 2, "applies after the halt: {effects:?}");

    let o = d.fluxctl(&d.admin, &["get", "states"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("HALTED"), "{}", stdout(&o));
    let o = d.fluxctl(&d.admin, &["get", "states", "web"]);
    assert!(
        stdout(&o).contains("fluxctl state resume web"),
        "{}",
        stdout(&o)
    );
    // The halt is a state event.
    let ev = send_text(d.req(
        reqwest::Method::GET,
        "/v1/events?follow=false&type=state.halted",
        &d.admin,
    ))
    .await;
    assert!(
        ev.contains("state.halted") && ev.contains("\"failed_repairs\":2"),
        "{ev}"
    );

    // Resume: the two failures are forgiven; two more fail, and it halts again.
    let o = d.fluxctl(&d.admin, &["state", "resume", "web"]);
    assert!(o.status.success(), "{}\n{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("resumed"), "{}", stdout(&o));
    let v = eventually("halted again", T, || async {
        let v = view(&d).await;
        (v["rollout"]["halted"] == true && applies(&runs) == 4).then_some(v)
    })
    .await;
    assert!(v["rollout"]["resumed_by"].is_string(), "{v}");
    more_held_passes(&d).await;
    assert_eq!(applies(&runs), 4, "{:?}", side_effects(&runs));

    // The resume is in the audit trail.
    let (s, audit) = d.get("/v1/audit", &d.admin).await;
    assert_eq!(s, 200, "{audit}");
    assert!(
        audit.to_string().contains("/v1/states/web/resume"),
        "{audit}"
    );

    // A backup and restore round trip keeps the halt and what the resume forgave (without the
    // record, the four failures would count).
    let dir = tempfile::tempdir().unwrap();
    let b = dir.path().join("s.backup");
    let o = d.fluxctl(&d.admin, &["backup", "create", b.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let backup = flux_core::backup::inspect(&std::fs::read(&b).unwrap()).unwrap();
    assert!(
        backup
            .entries
            .iter()
            .any(|e| e.key.path() == "state_rollout/web"),
        "no halt record in the backup"
    );
    let o = d.fluxctl(
        &d.admin,
        &["backup", "restore", b.to_str().unwrap(), "--force"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = view(&d).await;
    assert_eq!(
        (&v["rollout"]["halted"], &v["rollout"]["failed_repairs"]),
        (&Value::Bool(true), &Value::from(2)),
        "{v}"
    );
    eventually("the leader back after the restore", T, || async {
        (d.metric("flux_leader_status").await == Some(1.0)).then_some(())
    })
    .await;

    // A new version of the state lifts the halt at once.
    let text = std::fs::read_to_string(&f)
        .unwrap()
        .replace("exit 4", "exit 5");
    std::fs::write(&f, text).unwrap();
    let o = d.fluxctl(&d.admin, &["apply", "-f", &f]);
    assert!(o.status.success(), "{}", stderr(&o));
    eventually("applies again after a new version", T, || async {
        (applies(&runs) > 4).then_some(())
    })
    .await;
}
