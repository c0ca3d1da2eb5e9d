//! `fluxctl chaos`: a real run with every fault kind must hold every invariant; with leaders
//! that ignore their lease fencing alone must keep them; with fencing disabled as well the
//! checker must catch two leaders (so the checker can fail).
//!
//! The runs take turns: each is a whole cluster with short lease timings, and two at once on a
//! small machine would only measure the machine.

use std::process::{Command, Output};
use std::sync::{Mutex, MutexGuard};

static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// This test's turn to run a cluster, held until dropped; `None` when `redis-server` is not
/// installed (and not required), and the test then has nothing to run.
fn cluster_turn() -> Option<MutexGuard<'static, ()>> {
    tool("redis-server", "FLUX_REQUIRE_REDIS")?;
    Some(
        ONE_CLUSTER_AT_A_TIME
            .lock()
            .unwrap_or_else(|p| p.into_inner()),
    )
}

use flux_tests::*;
use serde_json::Value;

fn fluxctl(args: &[&str]) -> Output {
    Command::new(bin("fluxctl"))
        .args(args)
        .env_remove("FLUX_OUTPUT")
        .output()
        .expect("run fluxctl")
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", stdout(o), stderr(o)))
}

fn run_args<'a>(bin_dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["chaos", "run", "-o", "json", "--bin-dir", bin_dir];
    v.extend(extra);
    v
}

/// The CI chaos scenario: every fault kind at least once (40 s always fits a whole round), on
/// three nodes and three agents.
#[test]
fn a_chaos_run_with_every_fault_holds_every_invariant() {
    let Some(_turn) = cluster_turn() else {
        return;
    };
    let seed = "20261126".to_string();
    let dir = bin_dir().display().to_string();
    let o = fluxctl(&run_args(
        &dir,
        &["--scenario", "all", "--duration", "40s", "--seed", &seed],
    ));
    let r = json(&o);
    assert_eq!(o.status.code(), Some(0), "{r:#}\n{}", stderr(&o));
    assert_eq!(r["passed"], true);
    assert_eq!(r["seed"].as_u64(), seed.parse().ok());
    let faults = r["faults"].as_array().expect("faults");
    for s in [
        "leader-kill",
        "leader-pause",
        "agent-kill",
        "redis-restart",
        "partition",
        "network-freeze",
    ] {
        let hit: Vec<&Value> = faults.iter().filter(|f| f["scenario"] == s).collect();
        assert!(!hit.is_empty(), "{s} was not injected: {r:#}");
        if s.starts_with("leader") || s == "partition" || s == "network-freeze" {
            assert!(
                hit.iter().all(|f| f["failover_ms"].as_u64().is_some()),
                "{s}: {r:#}"
            );
        }
    }
    // The checker had something to judge: jobs, executions, leader writes under several
    // epochs (each leader fault starts a new term), results, and every agent as a target.
    let w = &r["workload"];
    assert!(w["acknowledged"].as_u64() > Some(50), "{r:#}");
    assert_eq!(w["succeeded"], w["acknowledged"]);
    assert!(w["executions"].as_u64() >= w["acknowledged"].as_u64());
    assert_eq!(w["state_targets"], 3);
    // The webhook had events to deliver through the faults, and its receiver got them all
    // (re-deliveries included), judged by `webhook_delivered_at_least_once`.
    assert!(w["webhook_events"].as_u64() > Some(50), "{r:#}");
    assert!(w["webhook_deliveries"].as_u64() >= w["webhook_events"].as_u64());
    assert!(
        r["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["invariant"] == "webhook_delivered_at_least_once" && i["held"] == true),
        "{r:#}"
    );
    // The rollout schedule fired through the faults (judged by schedule_fired_once_per_slot).
    assert!(w["schedule_rollouts"].as_u64() >= Some(5), "{r:#}");
    let h = &r["history"];
    assert!(h["leader_writes"].as_u64() > Some(0), "{r:#}");
    assert!(h["epochs"].as_u64() >= Some(4), "{r:#}");
    assert!(
        r["invariants"]
            .as_array()
            .expect("invariants")
            .iter()
            .all(|i| i["held"] == true)
    );
    // A run that passed cleans up after itself.
    assert_eq!(r["work_dir"], Value::Null);
}

/// A run with one leader pause (8 s leaves room for exactly one) and `extra` arguments.
fn one_leader_pause(extra: &[&str]) -> (Output, Value) {
    let dir = bin_dir().display().to_string();
    let mut args = vec![
        "--scenario",
        "leader-pause",
        "--duration",
        "8s",
        "--seed",
        "1",
        "--heal-timeout",
        "60s",
    ];
    args.extend(extra);
    let o = fluxctl(&run_args(&dir, &args));
    let r = json(&o);
    (o, r)
}

/// Leaders that ignore their lease: a leader frozen past its lease comes back and goes on
/// working, and only fencing stops it. Every invariant holds, and the history shows writes
/// refused as fenced.
#[test]
fn with_leases_ignored_fencing_alone_keeps_every_invariant() {
    let Some(_turn) = cluster_turn() else {
        return;
    };
    let (o, r) = one_leader_pause(&["--unsafe-ignore-lease"]);
    assert_eq!(o.status.code(), Some(0), "{r:#}\n{}", stderr(&o));
    assert_eq!(r["unsafety"], "ignore-lease");
    assert!(r["history"]["fenced"].as_u64() > Some(0), "{r:#}");
}

/// With fencing disabled as well, the frozen leader comes back and keeps writing under its old
/// epoch after its successor's writes: the checker reports it and the run exits 1, keeping the
/// histories that show it.
#[test]
fn without_fencing_the_checker_catches_two_leaders() {
    let Some(_turn) = cluster_turn() else {
        return;
    };
    let work = tempfile::tempdir().expect("tempdir");
    let work_dir = work.path().join("run");
    let work_str = work_dir.display().to_string();
    let (o, r) = one_leader_pause(&["--unsafe-no-fencing", "--work-dir", &work_str]);
    assert_eq!(o.status.code(), Some(1), "{r:#}\n{}", stderr(&o));
    assert_eq!(r["passed"], false);
    assert_eq!(r["unsafety"], "no-fencing");
    let violated: Vec<&str> = r["invariants"]
        .as_array()
        .expect("invariants")
        .iter()
        .filter(|i| i["held"] == false)
        .filter_map(|i| i["invariant"].as_str())
        .collect();
    assert!(violated.contains(&"one_leader_per_epoch"), "{r:#}");
    // Jobs are still kept by compare-and-set; what broke is leadership.
    assert!(!violated.contains(&"acknowledged_jobs_kept"), "{r:#}");
    // The frozen leader's epoch is older than the successor's it wrote after.
    let paused = r["faults"][0]["hit"].as_str().expect("the paused node");
    let v = r["violations"].as_array().expect("violations");
    assert!(
        v.iter().any(|v| v["detail"].as_str().is_some_and(|d| {
            d.contains(&format!("{paused} wrote revision")) && d.contains("under epoch")
        })),
        "{r:#}"
    );
    assert_eq!(r["work_dir"].as_str(), Some(work_str.as_str()));
    assert!(work_dir.join("history").read_dir().unwrap().count() >= 2);
}

#[test]
fn the_fault_schedule_is_reproducible_from_its_seed() {
    let plan = |seed: &str| {
        let o = fluxctl(&[
            "chaos",
            "plan",
            "--seed",
            seed,
            "--duration",
            "60s",
            "-o",
            "json",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        json(&o)
    };
    let a = plan("5");
    assert_eq!(a, plan("5"));
    assert_ne!(a["faults"], plan("6")["faults"]);
    assert!(a["faults"].as_array().is_some_and(|f| f.len() >= 5));
    // The table form names the seed, so a run can be repeated from its output.
    let o = fluxctl(&["chaos", "plan", "--seed", "5", "--scenario", "agent-kill"]);
    assert!(stdout(&o).starts_with("seed 5\n"), "{}", stdout(&o));
    assert!(!stdout(&o).contains("leader-kill"));
}

#[test]
fn bad_chaos_arguments_are_refused_with_exit_2_before_anything_starts() {
    let dir = bin_dir().display().to_string();
    for (args, says) in [
        (
            vec!["chaos", "plan", "--scenario", "leader-nap"],
            "unknown scenario",
        ),
        (
            run_args(
                &dir,
                &[
                    "--nodes",
                    "1",
                    "--duration",
                    "5s",
                    "--redis-server",
                    "/bin/true",
                ],
            ),
            "at least 2",
        ),
        (
            run_args(
                "/nonexistent",
                &["--duration", "5s", "--redis-server", "/bin/true"],
            ),
            "fluxd not found",
        ),
    ] {
        let o = fluxctl(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}
