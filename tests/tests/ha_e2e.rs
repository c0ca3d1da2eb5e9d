//! High availability with real processes: several `fluxd` nodes on one real `redis-server`,
//! leader election by lease, failover after `kill -9` and after SIGSTOP, fencing of the old
//! leader, and recovery after a Redis restart.

use std::time::Duration;

use flux_core::testing::RedisServer;
use flux_tests::*;
use nix::sys::signal::Signal;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(60);
/// Short lease timings so failovers are quick in tests.
const LEASE: [&str; 6] = flux_core::testing::FAST_LEASE_ARGS;

struct Cluster {
    nodes: Vec<Fluxd>,
    redis: RedisServer,
}

impl Cluster {
    async fn start(n: usize) -> Option<Cluster> {
        Cluster::start_with(n, &FAST_LIVENESS).await
    }

    /// `n` nodes with the given liveness settings.
    async fn start_with(n: usize, liveness: &[&str]) -> Option<Cluster> {
        let redis = RedisServer::start()?;
        let url = redis.url();
        let mut extra: Vec<&str> = LEASE.to_vec();
        extra.extend(liveness);
        // The name nginx checks on the nodes' certificate (deploy/nginx/fluxforge.conf).
        extra.extend(["--tls-san", "fluxd.internal"]);
        let nodes = Fluxd::cluster_on(&url, n, &extra).await;
        Some(Cluster { nodes, redis })
    }

    fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.url.clone()).collect()
    }

    /// Index of the single leader among live nodes; panics if two report leading at once.
    async fn leader(&self, skip: &[usize]) -> Option<usize> {
        let mut leaders = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            if skip.contains(&i) {
                continue;
            }
            if n.metric("flux_leader_status").await == Some(1.0) {
                leaders.push(i);
            }
        }
        assert!(leaders.len() <= 1, "two nodes report leading: {leaders:?}");
        leaders.first().copied()
    }

    async fn wait_leader(&self, skip: &[usize]) -> usize {
        eventually("a leader", T, || self.leader(skip)).await
    }
}

const FAST_LIVENESS: [&str; 8] = [
    "--heartbeat-interval",
    "250ms",
    "--unreachable-after",
    "1s",
    "--dead-after",
    "3s",
    "--sweep-interval",
    "200ms",
];

/// Submits through node `i`, falling back to the others; returns the job id once a node
/// acknowledged it.
async fn submit_any(c: &Cluster, start: usize, dead: &[usize], body: &Value) -> String {
    for k in 0..c.nodes.len() {
        let i = (start + k) % c.nodes.len();
        if dead.contains(&i) {
            continue;
        }
        let n = &c.nodes[i];
        let r = n
            .req(reqwest::Method::POST, "/v1/jobs", &n.admin)
            .json(body)
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 202
        {
            let v: Value = r.json().await.unwrap();
            return v["job_id"].as_str().unwrap().to_string();
        }
    }
    panic!("no node acknowledged the job");
}

/// Three nodes elect exactly one leader. `kill -9` of the leader while jobs are being submitted:
/// another node leads with a higher epoch, and every acknowledged job finishes, each attempt
/// with at most one result and exactly one finished attempt per job.
#[tokio::test(flavor = "multi_thread")]
async fn kill9_of_the_leader_loses_no_acknowledged_job() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let first = c.wait_leader(&[]).await;
    let epoch1 = c.nodes[first].metric("flux_leader_epoch").await.unwrap();
    let _agent = c.nodes[0]
        .agent_with_servers("default", "agent-1", &[], &c.urls())
        .await;

    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(submit_any(&c, i, &[], &json!({"command": format!("echo job-{i}")})).await);
    }
    c.nodes[first].proc.kill9();
    let dead = [first];
    for i in 10..30 {
        ids.push(submit_any(&c, i, &dead, &json!({"command": format!("echo job-{i}")})).await);
    }
    let second = c.wait_leader(&dead).await;
    assert_ne!(second, first);
    let epoch2 = c.nodes[second].metric("flux_leader_epoch").await.unwrap();
    assert!(
        epoch2 > epoch1,
        "new term epoch {epoch2} not above {epoch1}"
    );

    let n = &c.nodes[second];
    for (i, id) in ids.iter().enumerate() {
        let job = n.wait_job(&n.admin, id, T, terminal).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        let (_, atts) = n.get(&format!("/v1/jobs/{id}/attempts"), &n.admin).await;
        let atts = atts.as_array().unwrap();
        let finished = atts.iter().filter(|a| a["state"] == "finished").count();
        assert_eq!(finished, 1, "job {i}: {atts:?}");
        let logs = n.logs(&n.admin, id).await;
        assert_eq!(logs, format!("job-{i}\n"), "job {i} output");
    }
    // Status: the new leader holds the lease, and the killed node drops out of the node list
    // once its record goes stale.
    let status = eventually("status without the killed node", T, || async {
        let s = n.get("/v1/status", &n.admin).await.1;
        (s["nodes"].as_array()?.len() == 2).then_some(s)
    })
    .await;
    assert_eq!(
        status["leader_node"],
        format!("fluxd-{}", n.port),
        "{status}"
    );
    let me = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["node_id"] == status["leader_node"])
        .cloned()
        .unwrap();
    assert_eq!(me["leader"], true, "{status}");
}

/// A leader frozen with SIGSTOP past its lease is replaced; when it resumes it stops leading
/// (its writes would be fenced by the newer epoch) and exactly one leader remains.
#[tokio::test(flavor = "multi_thread")]
async fn a_frozen_leader_resumes_as_a_follower() {
    let Some(c) = Cluster::start(2).await else {
        return;
    };
    let old = c.wait_leader(&[]).await;
    let old_epoch = c.nodes[old].metric("flux_leader_epoch").await.unwrap();
    c.nodes[old].proc.signal(Signal::SIGSTOP);
    let new = c.wait_leader(&[old]).await;
    let new_epoch = c.nodes[new].metric("flux_leader_epoch").await.unwrap();
    assert!(new_epoch > old_epoch);
    // The store's epoch has moved past the frozen leader's: any write it attempts is fenced.
    let status = c.nodes[new].get("/v1/status", &c.nodes[new].admin).await.1;
    assert_eq!(status["store_epoch"].as_f64(), Some(new_epoch), "{status}");
    c.nodes[old].proc.signal(Signal::SIGCONT);
    eventually("the resumed node to step down", T, || async {
        (c.nodes[old].metric("flux_leader_status").await == Some(0.0)).then_some(())
    })
    .await;
    assert_eq!(c.leader(&[]).await, Some(new));
    let log = c.nodes[old].proc.log_text();
    assert!(
        log.contains("stepping down") || log.contains("fenced"),
        "the resumed leader did not report stepping down:\n{log}"
    );
    // The cluster still runs jobs.
    let _agent = c.nodes[new]
        .agent_with_servers("default", "agent-1", &[], &c.urls())
        .await;
    let id = submit_any(&c, old, &[], &json!({"command": "true"})).await;
    let n = &c.nodes[new];
    let job = n.wait_job(&n.admin, &id, T, terminal).await;
    assert_eq!(job["status"], "succeeded", "{job}");
}

/// SIGTERM on the leader releases the lease: another node leads without waiting for the TTL,
/// and the stopped node exits cleanly.
#[tokio::test(flavor = "multi_thread")]
async fn graceful_stop_hands_leadership_over() {
    let Some(mut c) = Cluster::start(2).await else {
        return;
    };
    let old = c.wait_leader(&[]).await;
    let status = terminate(&mut c.nodes[old].proc, "leader exit", T).await;
    assert!(status.success(), "{status:?}");
    let log = c.nodes[old].proc.log_text();
    assert!(log.contains("lease released"), "{log}");
    let new = c.wait_leader(&[old]).await;
    assert_ne!(new, old);
}

/// Redis killed with SIGKILL and restarted from its AOF: the cluster elects a leader again and
/// jobs acknowledged before the crash are still there and run.
#[tokio::test(flavor = "multi_thread")]
async fn the_cluster_recovers_from_a_redis_restart() {
    let Some(mut c) = Cluster::start(2).await else {
        return;
    };
    c.wait_leader(&[]).await;
    let before = submit_any(&c, 0, &[], &json!({"command": "echo before"})).await;
    c.redis.kill9();
    c.redis.restart();
    c.wait_leader(&[]).await;
    let _agent = c.nodes[0]
        .agent_with_servers("default", "agent-1", &[], &c.urls())
        .await;
    let after = submit_any(&c, 1, &[], &json!({"command": "echo after"})).await;
    let n = &c.nodes[0];
    for id in [before, after] {
        let job = n.wait_job(&n.admin, &id, T, terminal).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

/// Runs the shipped `deploy/nginx/fluxforge.conf`, with this test's ports and certificate
/// paths, in front of the cluster. Skips when nginx is not installed unless
/// `FLUX_REQUIRE_NGINX` is set.
struct Nginx {
    /// Kept for its Drop: nginx is killed with the test.
    _proc: Proc,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Nginx {
    fn start(c: &Cluster) -> Option<Nginx> {
        let bin = ["/usr/sbin/nginx", "/usr/bin/nginx", "/usr/local/sbin/nginx"]
            .into_iter()
            .map(std::path::PathBuf::from)
            .find(|p| p.exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("FLUX_REQUIRE_NGINX").is_none(),
                "FLUX_REQUIRE_NGINX is set but nginx is not installed"
            );
            eprintln!("skipping: nginx is not installed");
            return None;
        };
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/fluxforge.conf"),
        )
        .unwrap();
        let data = c.nodes[0].data_dir();
        let port = free_port();
        let mut conf = shipped
            .replace("listen 8443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace(
                "/etc/fluxforge/tls/server.crt",
                &data.join("tls/server.crt").display().to_string(),
            )
            .replace(
                "/etc/fluxforge/tls/server.key",
                &data.join("tls/server.key").display().to_string(),
            )
            .replace(
                "/etc/fluxforge/tls/ca.crt",
                &c.nodes[0].ca_path().display().to_string(),
            );
        for (i, n) in c.nodes.iter().enumerate() {
            conf = conf.replace(
                &format!("fluxd-{}.internal:8443", i + 1),
                &format!("127.0.0.1:{}", n.port),
            );
        }
        assert!(!conf.contains(".internal:8443"), "every upstream replaced");
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("fluxforge.conf");
        std::fs::write(&site, conf).unwrap();
        let d = dir.path().display();
        let main = format!(
            "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fcgi;\n  uwsgi_temp_path {d}/uwsgi;\n\
             scgi_temp_path {d}/scgi;\n  include {};\n}}\n",
            site.display()
        );
        let main_path = dir.path().join("nginx.conf");
        std::fs::write(&main_path, main).unwrap();
        let check = std::process::Command::new(&bin)
            .args(["-t", "-p"])
            .arg(dir.path())
            .arg("-c")
            .arg(&main_path)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&check.stderr)
        );
        let child = std::process::Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&main_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let proc = Proc {
            child,
            log: dir.path().join("error.log"),
            name: "nginx".into(),
        };
        Some(Nginx {
            _proc: proc,
            port,
            _dir: dir,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM makes the master stop its workers too; SIGKILL (Proc's drop) would orphan them.
        self._proc.signal(Signal::SIGTERM);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self._proc.try_exit().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// nginx with the shipped config in front of three nodes: agents and clients only know nginx,
/// jobs run through it, and keep running when the leader behind it is killed.
#[tokio::test(flavor = "multi_thread")]
async fn nginx_balances_api_and_agents_over_the_nodes() {
    let Some(mut c) = Cluster::start(3).await else {
        return;
    };
    let Some(nginx) = Nginx::start(&c) else {
        return;
    };
    let lb = format!("https://127.0.0.1:{}", nginx.port);
    let http = &c.nodes[0].http.clone();
    let admin = c.nodes[0].admin.clone();
    eventually("nginx up", T, || async {
        let r = http.get(format!("{lb}/healthz")).send().await.ok()?;
        r.status().is_success().then_some(())
    })
    .await;
    let _agent = c.nodes[0]
        .agent_with_servers("default", "agent-1", &[], std::slice::from_ref(&lb))
        .await;
    let submit = |i: usize| {
        let (http, lb, admin) = (http.clone(), lb.clone(), admin.clone());
        async move {
            let r = http
                .post(format!("{lb}/v1/jobs"))
                .bearer_auth(&admin)
                .json(&json!({"command": format!("echo via-nginx-{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            r.json::<Value>().await.unwrap()["job_id"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(submit(i).await);
    }
    let leader = c.wait_leader(&[]).await;
    c.nodes[leader].proc.kill9();
    for i in 6..12 {
        ids.push(submit(i).await);
    }
    for (i, id) in ids.iter().enumerate() {
        let v = eventually(&format!("job {i} through nginx"), T, || async {
            let r = http
                .get(format!("{lb}/v1/jobs/{id}"))
                .bearer_auth(&admin)
                .send()
                .await
                .ok()?;
            let v: Value = r.json().await.ok()?;
            terminal(&v).then_some(v)
        })
        .await;
        assert_eq!(v["status"], "succeeded", "{v}");
    }
    // Metrics (with a token of the cluster tenant) and the error shape come through unchanged.
    let m = send_text(http.get(format!("{lb}/metrics")).bearer_auth(&admin)).await;
    assert!(m.contains("flux_leader_status"), "{m}");
    let r = http.get(format!("{lb}/v1/jobs")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    drop(nginx);
}

/// `kill -9` of the leader while a desired-state repair (apply) is running: the next leader
/// picks the round up where it was, so the apply runs exactly once, is verified, and is
/// recorded as one repair.
#[tokio::test(flavor = "multi_thread")]
async fn leader_failover_mid_apply_neither_loses_nor_duplicates_the_repair() {
    let Some(mut c) = Cluster::start(2).await else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().display().to_string();
    let first = c.wait_leader(&[]).await;
    let _agent = c.nodes[0]
        .agent_with_servers("default", "agent-1", &[], &c.urls())
        .await;
    let other = 1 - first;
    let spec = json!({
        "name": "slow-repair",
        "targets": {"agents": ["agent-1"]},
        "check": format!("test -f {dir}/ok"),
        "apply": format!("echo run >> {dir}/applied; sleep 2; touch {dir}/ok"),
        "interval_secs": 60,
    });
    let n = &c.nodes[other];
    let (s, v) = send(
        n.req(reqwest::Method::PUT, "/v1/states/slow-repair", &n.admin)
            .json(&spec),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The apply is running on the agent: kill the leader now.
    eventually("the apply to start", T, || async {
        work.path().join("applied").exists().then_some(())
    })
    .await;
    c.nodes[first].proc.kill9();
    let second = c.wait_leader(&[first]).await;
    assert_eq!(second, other);
    let n = &c.nodes[other];
    let view = eventually("the target compliant", T, || async {
        let (s, v) = n.get("/v1/states/slow-repair", &n.admin).await;
        (s == 200 && v["status"][0]["status"] == "compliant").then_some(v)
    })
    .await;
    let t = &view["status"][0];
    assert_eq!(t["repairs"], 1, "{t}");
    let applied = std::fs::read_to_string(work.path().join("applied")).unwrap();
    assert_eq!(applied, "run\n", "the apply ran more than once");
    let kinds = field_strs(&t["events"], "kind");
    assert_eq!(kinds, vec!["drift", "applying", "repaired"], "{t}");
    let (_, jobs) = n.get("/v1/jobs?limit=100", &n.admin).await;
    let applies = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| {
            j["command"]["shell"]
                .as_str()
                .is_some_and(|c| c.contains("applied"))
        })
        .count();
    assert_eq!(applies, 1, "{jobs}");
}

/// An agent that talks only to a follower is kept alive by that follower's liveness records
/// (heartbeats are not written to the store): the leader never even finds it unreachable while
/// it heartbeats (the records lag well under the 2 s window), the API shows a fresh
/// `last_seen`, and once the agent is killed it goes dead.
#[tokio::test(flavor = "multi_thread")]
async fn an_agent_heard_only_by_a_follower_is_kept_alive_by_its_liveness_records() {
    let liveness = [
        "--heartbeat-interval",
        "250ms",
        "--unreachable-after",
        "2s",
        "--dead-after",
        "4s",
        "--sweep-interval",
        "200ms",
    ];
    let Some(c) = Cluster::start_with(2, &liveness).await else {
        return;
    };
    let leader = c.wait_leader(&[]).await;
    let follower = 1 - leader;
    let mut agent = c.nodes[follower].agent("default", "agent-f", &[]).await;
    let n = &c.nodes[leader];
    let agent_record = || async {
        let (status, v) = n.get("/v1/agents/agent-f", &n.admin).await;
        assert_eq!(status, 200, "{v}");
        v
    };
    // Two dead windows of heartbeats through the follower only.
    let until = tokio::time::Instant::now() + Duration::from_secs(8);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while tokio::time::Instant::now() < until {
        tick.tick().await;
        let v = agent_record().await;
        assert_eq!(v["state"], "online", "{v}");
    }
    eventually("a fresh last_seen", T, || async {
        let v = agent_record().await;
        let age = flux_core::model::now_ms().saturating_sub(v["last_seen"].as_u64()?);
        (age < 2000).then_some(())
    })
    .await;
    agent.kill9();
    eventually("the killed agent dead", T, || async {
        (agent_record().await["state"] == "dead").then_some(())
    })
    .await;
}
