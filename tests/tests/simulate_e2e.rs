//! `flux-agent --simulate N` against a real `fluxd`: N agents in one process come online, run
//! fan-outs and ordinary jobs through the agent protocol, honour cancellations, share a few
//! HTTP/2 connections and stop cleanly on SIGTERM.

use std::collections::BTreeSet;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_tests::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);

/// Starts `flux-agent --simulate n` with `token` (it mints the agents' tokens itself).
fn simulator(d: &Fluxd, token: &str, name: &str, extra: &[&str]) -> Proc {
    let mut cmd = Command::new(bin("flux-agent"));
    cmd.arg("--server").arg(&d.url).arg("--ca").arg(d.ca_path());
    if !extra.contains(&"--poll-secs") {
        cmd.arg("--poll-secs").arg("5");
    }
    cmd.args(extra)
        .env("FLUX_TOKEN", token)
        .env_remove("FLUX_TOKEN_FILE");
    let log = d.dir.path().join(format!("{name}.log"));
    Proc::spawn(name, cmd, log).expect("spawn flux-agent --simulate")
}

/// Online agents whose node id starts with `prefix`.
async fn online(d: &Fluxd, prefix: &str) -> BTreeSet<String> {
    let (s, v) = d.get("/v1/agents", &d.admin).await;
    assert_eq!(s, 200, "{v}");
    v.as_array()
        .expect("agent list")
        .iter()
        .filter(|a| a["state"] == "online")
        .filter_map(|a| a["node_id"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// Waits (up to `T`, failing as `what`) until `n` agents whose node id starts with `prefix`
/// are online.
async fn wait_online(d: &Fluxd, what: &str, prefix: &str, n: usize) {
    eventually(what, T, || async {
        (online(d, prefix).await.len() == n).then_some(())
    })
    .await;
}

/// TCP sockets held by a process.
fn sockets(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
        })
        .count()
}

async fn wait_exit(p: &mut Proc, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = p.try_exit() {
            return s;
        }
        assert!(Instant::now() < deadline, "{} did not exit", p.name);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Submits `sleep 1` pinned to `node` and waits (up to `T`) until it runs; returns its id.
async fn sleeping_on(d: &Fluxd, node: &str) -> String {
    let id = d
        .submit(&d.admin, &json!({"command": "sleep 1", "node_id": node}))
        .await;
    d.wait_job(&d.admin, &id, T, |v| v["status"] == "running")
        .await;
    id
}

/// SIGTERM to the simulator: it exits (within 20 s) with success.
async fn stop_cleanly(sim: &mut Proc) {
    sim.signal(Signal::SIGTERM);
    let status = wait_exit(sim, Duration::from_secs(20)).await;
    assert!(status.success(), "simulator exited with {status}");
}

/// Agents' long polls last 60 s here, so a job is only done within the deadline below if the
/// node woke the waiting poll when the task landed in the agent's inbox (on redb the notice
/// comes from the commit, on Redis from its pub/sub).
#[tokio::test(flavor = "multi_thread")]
async fn waiting_polls_are_woken_when_a_task_lands() {
    let redis = flux_core::testing::RedisServer::start();
    let mut stores = vec![None];
    if let Some(r) = &redis {
        stores.push(Some(r.url()));
    }
    for store in stores {
        let opts = FluxdOpts {
            args: store
                .iter()
                .flat_map(|u| ["--store".to_string(), u.clone()])
                .collect(),
            ..FluxdOpts::default()
        };
        let d = Fluxd::start_with(opts).await;
        let _sim = simulator(
            &d,
            &d.admin,
            "simulator",
            &[
                "--simulate",
                "2",
                "--poll-secs",
                "60",
                "--simulate-run-ms",
                "1",
            ],
        );
        wait_online(&d, "2 agents online", "sim-", 2).await;
        for i in 0..4 {
            let job = d
                .admin_post_expect("/v1/jobs", &json!({"command": format!("true {i}")}), 202)
                .await;
            let id = job["job_id"].as_str().expect("job id");
            let done = d
                .wait_job(&d.admin, id, Duration::from_secs(15), |j| {
                    j["status"] == "succeeded"
                })
                .await;
            assert_eq!(done["status"], "succeeded", "{store:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_simulated_agents_run_fan_outs_and_jobs_and_stop_cleanly() {
    let d = Arc::new(Fluxd::start().await);
    let mut sim = simulator(
        &d,
        &d.admin,
        "simulator",
        &[
            "--simulate",
            "50",
            "--simulate-run-ms",
            "200",
            "--label",
            "fleet=sim",
        ],
    );
    let expected: BTreeSet<String> = (1..=50).map(|i| format!("sim-{i:02}")).collect();
    eventually("50 simulated agents online", T, || async {
        (online(&d, "sim-").await == expected).then_some(())
    })
    .await;
    // One process, one connection pool: the 50 agents' long polls and heartbeats are
    // multiplexed over HTTP/2 instead of holding a connection each.
    let socks = sockets(sim.pid());
    assert!(socks <= 4, "{socks} sockets for 50 simulated agents");

    // A fan-out runs once on every simulated agent, each printing its simulated line.
    let fan = d
        .admin_job_expect(
            &json!({"command": "uname -a", "selector": {"fleet": "sim"}, "fan_out": true}),
            202,
        )
        .await;
    let jobs: Vec<String> = fan["jobs"]
        .as_array()
        .expect("fan-out jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("job id").to_string())
        .collect();
    assert_eq!(jobs.len(), 50, "{fan}");
    let mut ran_on = BTreeSet::new();
    for id in &jobs {
        let job = d.wait_job(&d.admin, id, T, terminal).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["exit_code"], 0, "{job}");
        let node = job["agent"].as_str().expect("agent").to_string();
        assert_eq!(
            d.logs(&d.admin, id).await,
            format!("simulated {id} on {node}\n")
        );
        ran_on.insert(node);
    }
    assert_eq!(ran_on, expected);

    // Ordinary jobs submitted together are spread over several simulated agents.
    let mut submits = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let d = d.clone();
        submits.spawn(async move {
            d.submit(
                &d.admin,
                &json!({"command": "true", "selector": {"fleet": "sim"}}),
            )
            .await
        });
    }
    let ids = submits.join_all().await;
    let mut spread = BTreeSet::new();
    for id in &ids {
        let job = d.wait_job(&d.admin, id, T, terminal).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        spread.insert(job["agent"].as_str().expect("agent").to_string());
    }
    assert!(spread.len() >= 5, "40 jobs ran on only {spread:?}");

    stop_cleanly(&mut sim).await;
}

/// A simulated job runs until cancelled; the cancellation reaches it through the agent
/// protocol, and SIGTERM with a job running still stops the process with exit code 0.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_jobs_honour_cancellation() {
    let d = Fluxd::start().await;
    let mut sim = simulator(
        &d,
        &d.admin,
        "slow",
        &[
            "--simulate",
            "2",
            "--simulate-prefix",
            "slow",
            "--simulate-run-ms",
            "600000",
        ],
    );
    wait_online(&d, "2 simulated agents online", "slow-", 2).await;
    let id = sleeping_on(&d, "slow-1").await;
    let (s, v) = d
        .post(&format!("/v1/jobs/{id}/cancel"), &d.admin, &json!({}))
        .await;
    assert!(s == 200 || s == 202, "{s} {v}");
    let job = d.wait_job(&d.admin, &id, T, terminal).await;
    assert_eq!(job["status"], "cancelled", "{job}");

    sleeping_on(&d, "slow-2").await;
    stop_cleanly(&mut sim).await;
}

/// Simulation needs a token that may mint agent tokens: an operator token, or a revoked admin
/// token, is refused with a clear message and a failing exit code.
#[tokio::test(flavor = "multi_thread")]
async fn a_token_that_cannot_mint_agent_tokens_is_refused() {
    let d = Fluxd::start().await;
    let operator = d.token("default", "operator", None).await;
    let mut sim = simulator(&d, &operator, "operator-sim", &["--simulate", "3"]);
    let status = wait_exit(&mut sim, T).await;
    assert!(!status.success());
    let log = sim.log_text();
    assert!(log.contains("may create agent tokens"), "{log}");
    assert!(log.contains("role operator"), "{log}");

    let admin = d.token("default", "admin", None).await;
    let (s, v) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": admin}))
        .await;
    assert_eq!(s, 200, "{v}");
    let mut sim = simulator(&d, &admin, "revoked-sim", &["--simulate", "3"]);
    let status = wait_exit(&mut sim, T).await;
    assert!(!status.success());
    let log = sim.log_text();
    assert!(
        log.contains("cannot create agent tokens with the given token"),
        "{log}"
    );
    assert!(log.contains("401"), "{log}");
    // Nothing registered.
    let (_, agents) = d.get("/v1/agents", &d.admin).await;
    assert_eq!(agents, Value::Array(vec![]));
}
