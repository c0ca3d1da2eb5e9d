//! Garbage collection with real processes: two `fluxd` nodes on a real `redis-server`, the
//! leader collecting expired jobs in small batches, killed with SIGKILL while a sweep is under
//! way. The new leader finishes the sweep from the `gc/state` cursor; nothing live or
//! referenced is deleted by either (checked on the objects themselves and on both nodes'
//! history logs with the chaos checker's `nothing_live_collected` rule).

use std::time::Duration;

use flux_core::chaos::Invariant;
use flux_core::chaos::check::{JobSeen, Observations, check};
use flux_core::history::{HistoryEvent, parse_history};
use flux_core::testing::RedisServer;
use flux_tests::*;
use serde_json::json;

const T: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_mid_collection_deletes_nothing_live_and_its_successor_finishes() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let hist = tempfile::tempdir().unwrap();
    let node_args = |i: usize| -> Vec<String> {
        let mut a: Vec<String> = flux_core::testing::FAST_LEASE_ARGS
            .iter()
            .chain(flux_core::testing::FAST_LIVENESS_ARGS.iter())
            .map(|s| s.to_string())
            .collect();
        a.extend(
            [
                "--job-retention",
                "1s",
                "--gc-interval",
                "150ms",
                "--gc-batch",
                "3",
                "--gauges-every",
                "200ms",
            ]
            .map(String::from),
        );
        a.push("--history-log".into());
        a.push(
            hist.path()
                .join(format!("n{i}.jsonl"))
                .display()
                .to_string(),
        );
        a
    };
    let mut first_args = vec!["--store".to_string(), url.clone()];
    first_args.extend(node_args(0));
    let first = Fluxd::start_with(FluxdOpts {
        args: first_args,
        ..FluxdOpts::default()
    })
    .await;
    let second_args = node_args(1);
    let refs: Vec<&str> = second_args.iter().map(String::as_str).collect();
    let second = Fluxd::start_with(FluxdOpts::peer_of(&first, &url, &refs)).await;
    let mut nodes = [first, second];
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let leader = eventually("a leader", T, || async {
        for (i, n) in nodes.iter().enumerate() {
            if n.metric("flux_leader_status").await == Some(1.0) {
                return Some(i);
            }
        }
        None
    })
    .await;
    let other = 1 - leader;
    let _agent = nodes[other]
        .agent_with_servers("default", "agent-1", &[], &urls)
        .await;
    let n = &nodes[other];

    // What must stay: a running job, a queued one, and a finished one whose idempotency key
    // is inside its window (24h by default) though the job is past its 1s retention.
    let work = tempfile::tempdir().unwrap();
    let (running, _pid) = n.submit_blocking_on("agent-1", work.path(), T).await;
    let queued = n
        .submit(
            &n.admin,
            &json!({"command": "true", "node_id": "absent-agent", "allow_unknown_node": true}),
        )
        .await;
    let keyed_body = json!({"command": "echo keyed", "idempotency_key": "release-7"});
    let keyed = n.submit(&n.admin, &keyed_body).await;
    n.wait_job(&n.admin, &keyed, T, terminal).await;

    // What must go: 30 quick jobs, collected 3 per pass.
    let mut doomed = Vec::new();
    for i in 0..30 {
        let body = json!({"command": format!("echo doomed-{i}")});
        doomed.push(n.submit(&n.admin, &body).await);
    }
    // The leader starts collecting; it is killed as soon as its first batches are in.
    eventually("the first collected jobs", T, || async {
        let v = nodes[leader]
            .metric("flux_gc_deleted_total{kind=\"job\"}")
            .await?;
        (v >= 1.0).then_some(())
    })
    .await;
    nodes[leader].proc.kill9();
    let n = &nodes[other];
    eventually("the other node to lead", T, || async {
        (n.metric("flux_leader_status").await == Some(1.0)).then_some(())
    })
    .await;
    // The successor finishes the job: every doomed job goes, with its output.
    eventually("every expired job collected", T, || async {
        for id in &doomed {
            let (s, _) = n.get(&format!("/v1/jobs/{id}"), &n.admin).await;
            if s != 404 {
                return None;
            }
        }
        Some(())
    })
    .await;
    for id in doomed.iter().take(3) {
        let (s, _) = n.get(&format!("/v1/jobs/{id}/attempts"), &n.admin).await;
        assert_eq!(s, 404, "attempts of {id}");
    }
    // Everything live or referenced is still there.
    let (_, r) = n.get(&format!("/v1/jobs/{running}"), &n.admin).await;
    assert_eq!(r["status"], "running", "{r}");
    let (_, q) = n.get(&format!("/v1/jobs/{queued}"), &n.admin).await;
    assert_eq!(q["status"], "queued", "{q}");
    let (s, k) = n.get(&format!("/v1/jobs/{keyed}"), &n.admin).await;
    assert_eq!((s, k["status"].as_str()), (200, Some("succeeded")), "{k}");
    assert_eq!(n.logs(&n.admin, &keyed).await, "keyed\n");
    // The live key still names its first job.
    let (s, again) = n.post("/v1/jobs", &n.admin, &keyed_body).await;
    assert!(s == 200 || s == 202, "{s} {again}");
    assert_eq!(again["job_id"], keyed.as_str(), "{again}");
    // The object gauge follows the successor's sweeps: 3 jobs left.
    eventually("flux_store_objects to count the jobs left", T, || async {
        let v = n.metric("flux_store_objects{kind=\"job\"}").await?;
        (v == 3.0).then_some(())
    })
    .await;

    // Both nodes' histories: every collected job was finished when read, and none was one of
    // the jobs that had to stay.
    let mut history: Vec<HistoryEvent> = Vec::new();
    for i in 0..2 {
        let text =
            std::fs::read_to_string(hist.path().join(format!("n{i}.jsonl"))).unwrap_or_default();
        history.extend(parse_history(&text).0);
    }
    let collected: Vec<&str> = history
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Collected { job_id, .. } => Some(job_id.as_str()),
            _ => None,
        })
        .collect();
    // (A node killed right after a commit may not have logged that batch's line.)
    assert!(!collected.is_empty());
    for id in &collected {
        assert!(
            doomed.iter().any(|d| d == id),
            "collected {id}, not a doomed job"
        );
    }
    let obs = Observations {
        jobs: [&running, &queued, &keyed]
            .iter()
            .map(|id| JobSeen {
                job_id: id.to_string(),
                ..JobSeen::default()
            })
            .collect(),
        history,
        ..Observations::default()
    };
    let violations: Vec<_> = check(&obs)
        .into_iter()
        .filter(|v| v.invariant == Invariant::NothingLiveCollected)
        .collect();
    assert!(violations.is_empty(), "{violations:?}");
    drop(redis);
}

/// Through the API: inside `--idempotency-window` a replay returns the first job; once the
/// window has passed the same key creates a new job, which the key then names.
#[tokio::test(flavor = "multi_thread")]
async fn an_idempotency_key_names_a_new_job_once_its_window_has_passed() {
    let d = Fluxd::start_args(&["--idempotency-window", "2s"]).await;
    let body = json!({"command": "true", "node_id": "nobody", "idempotency_key": "nightly", "allow_unknown_node": true});
    let first = d.submit(&d.admin, &body).await;
    let (_, again) = d.post("/v1/jobs", &d.admin, &body).await;
    assert_eq!(again["job_id"], first.as_str(), "{again}");
    let second = eventually("a new job for the expired key", T, || async {
        let (s, v) = d.post("/v1/jobs", &d.admin, &body).await;
        let id = v["job_id"].as_str()?.to_string();
        (s == 202 && id != first).then_some(id)
    })
    .await;
    // The new job is the key's now, and the first job is still there.
    let (_, replay) = d.post("/v1/jobs", &d.admin, &body).await;
    assert_eq!(replay["job_id"], second.as_str(), "{replay}");
    let (s, _) = d.get(&format!("/v1/jobs/{first}"), &d.admin).await;
    assert_eq!(s, 200);
}
