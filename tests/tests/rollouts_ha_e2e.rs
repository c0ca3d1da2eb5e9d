//! A rollout survives the SIGKILL of its leader: on a 2-node cluster sharing Redis, the leader
//! is killed while the first targets run; the other node takes over and finishes the rollout.
//! Measured from the side effects the jobs write themselves: every target ran exactly once
//! (none repeated, none lost) and never more than `max_concurrency` at once.

use std::time::Duration;

use flux_core::testing::RedisServer;
use flux_tests::*;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
const LEASE: [&str; 6] = flux_core::testing::FAST_LEASE_ARGS;
const LIVENESS: [&str; 8] = [
    "--heartbeat-interval",
    "250ms",
    "--unreachable-after",
    "2s",
    "--dead-after",
    "6s",
    "--sweep-interval",
    "200ms",
];

async fn leader(nodes: &[Fluxd], skip: Option<usize>) -> Option<usize> {
    let mut leaders = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        if Some(i) != skip && n.metric("flux_leader_status").await == Some(1.0) {
            leaders.push(i);
        }
    }
    assert!(leaders.len() <= 1, "two nodes report leading: {leaders:?}");
    leaders.first().copied()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_leader_killed_mid_rollout_neither_repeats_nor_loses_a_target() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let url = redis.url();
    let mut extra: Vec<&str> = LEASE.to_vec();
    extra.extend(LIVENESS);
    let mut nodes = Fluxd::cluster_on(&url, 2, &extra).await;
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let lead = eventually("a leader", T, || leader(&nodes, None)).await;
    let other = 1 - lead;
    let names = ["w1", "w2", "w3", "w4", "w5", "w6"];
    let mut agents = Vec::new();
    for n in names {
        agents.push(
            nodes[other]
                .agent_with_servers("default", n, &["role=web"], &urls)
                .await,
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!(
        "f={d}/$FLUX_NODE_ID; echo start $(date +%s%N) >> $f; sleep 1.5; echo end $(date +%s%N) >> $f",
        d = dir.path().display()
    );
    let n = &nodes[other];
    let r = n
        .admin_post_expect(
            "/v1/rollouts",
            &json!({"command": cmd, "selector": "role=web", "max_concurrency": 2}),
            201,
        )
        .await;
    let id = r["rollout_id"].as_str().unwrap().to_string();
    // The first two targets run: kill the leader now.
    eventually("the first targets to start", T, || async {
        (std::fs::read_dir(dir.path()).ok()?.count() == 2).then_some(())
    })
    .await;
    nodes[lead].proc.kill9();
    let next = eventually("a new leader", T, || leader(&nodes, Some(lead))).await;
    assert_eq!(next, other);
    let n = &nodes[other];
    let done: Value = eventually(
        "the rollout to finish",
        Duration::from_secs(120),
        || async {
            let (s, v) = n.get(&format!("/v1/rollouts/{id}"), &n.admin).await;
            (s == 200 && v["finished_at"].is_u64()).then_some(v)
        },
    )
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // From the side effects: each target once, never more than 2 at once.
    let mut spans = Vec::new();
    for name in names {
        let text = std::fs::read_to_string(dir.path().join(name))
            .unwrap_or_else(|_| panic!("{name} never ran (lost)"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{name} ran more than once: {text}");
        let t = |l: &str| {
            l.split_whitespace()
                .nth(1)
                .unwrap()
                .parse::<u128>()
                .unwrap()
        };
        spans.push((t(lines[0]), 1i32));
        spans.push((t(lines[1]), -1i32));
    }
    spans.sort();
    let (mut cur, mut max) = (0, 0);
    for (_, d) in spans {
        cur += d;
        max = max.max(cur);
    }
    assert!(max <= 2, "{max} targets ran at once");
    let (_, jobs) = n
        .get(&format!("/v1/jobs?group={id}&kind=rollout"), &n.admin)
        .await;
    assert_eq!(
        jobs.as_array().unwrap().len(),
        names.len(),
        "one job per target: {jobs}"
    );
    drop(agents);
}
