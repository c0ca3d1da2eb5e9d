//! The local cluster of a chaos run: one real `redis-server`, `fluxd` nodes that each reach it
//! through their own [`FaultProxy`] and record their history with `--history-log`, and
//! `flux-agent` processes. [`Cluster`] starts it, finds the leader, measures failovers and
//! carries out each fault (inject, hold, heal).
//!
//! Every process is a [`Member`]: a [`Proc`] from `flux_core::testing::proc` with the
//! [`Launch`] that started it, so a fault can kill it and start it again the same way.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flux_core::chaos::faultproxy::FaultProxy;
use flux_core::chaos::{Fault, Scenario};
use flux_core::client::{ApiClient, TlsOptions};
use flux_core::testing::{FAST_LEASE_ARGS, FAST_LIVENESS_ARGS, Launch, Proc, try_free_port};
use nix::sys::signal::Signal;
use reqwest::Method;

use super::report::FaultRun;
use super::{FAILOVER_LIMIT, Opts, TENANT, poll};

/// A process of the cluster and the command that started it, so it can be restarted the same
/// way. Dropping it kills the process (SIGKILL also ends a process stopped with SIGSTOP).
pub(super) struct Member {
    launch: Launch,
    proc: Option<Proc>,
}

impl Member {
    fn start(name: &str, bin: &Path, args: Vec<OsString>, log: PathBuf) -> Result<Member> {
        let mut m = Member {
            launch: Launch::new(name, bin, args, log),
            proc: None,
        };
        m.spawn()?;
        Ok(m)
    }

    /// Starts the process (again, after [`Member::kill9`]).
    fn spawn(&mut self) -> Result<()> {
        self.proc = Some(self.launch.spawn()?);
        Ok(())
    }

    fn signal(&self, sig: Signal) {
        if let Some(p) = &self.proc {
            p.signal(sig);
        }
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// Fails if the process has exited (it should be running).
    fn check_running(&mut self) -> Result<()> {
        if let Some(p) = &mut self.proc
            && let Some(status) = p.try_exit()
        {
            bail!(
                "{} exited ({status}); see {}",
                self.launch.name,
                self.launch.log.display()
            );
        }
        Ok(())
    }
}

pub(super) struct Node {
    pub(super) id: String,
    pub(super) url: String,
    proc: Member,
    /// Client bound to this node only.
    api: ApiClient,
}

pub(super) struct Cluster {
    work: PathBuf,
    redis: Member,
    redis_port: u16,
    proxies: Vec<FaultProxy>,
    pub(super) nodes: Vec<Node>,
    agents: Vec<Member>,
    pub(super) agent_ids: Vec<String>,
    /// Client that fails over between all nodes.
    pub(super) api: ApiClient,
    pub(super) tls: TlsOptions,
    pub(super) admin: String,
}

/// A node's `/v1/status`, `None` unless it answers within a second.
async fn status(n: &Node) -> Option<serde_json::Value> {
    n.api
        .call(Method::GET, "/v1/status", None, Duration::from_secs(1))
        .await
        .ok()
}

fn os(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn redis_args(port: u16, dir: &Path) -> Vec<OsString> {
    os(&[
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--dir".into(),
        dir.display().to_string(),
        // Every acknowledged write is on disk before Redis answers: a kill -9 loses nothing.
        "--appendonly".into(),
        "yes".into(),
        "--appendfsync".into(),
        "always".into(),
        "--save".into(),
        String::new(),
        "--protected-mode".into(),
        "yes".into(),
        "--logfile".into(),
        "redis.log".into(),
    ])
}

async fn wait_redis(port: u16) -> Result<()> {
    poll(
        "redis-server to accept connections",
        Duration::from_secs(20),
        || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await
}

/// Whether `node` answers `/readyz`.
async fn ready(http: &reqwest::Client, url: &str) -> bool {
    http.get(format!("{url}/readyz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// The arguments of node `i` (`id`, listening on `port`, reaching Redis on `store_port`).
fn node_args(o: &Opts, work: &Path, i: usize, id: &str, port: u16, store_port: u16) -> Vec<String> {
    let first_data = work.join("node-0");
    let mut args: Vec<String> = vec![
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--data-dir".into(),
        work.join(format!("node-{i}")).display().to_string(),
        "--node-id".into(),
        id.to_string(),
        "--store".into(),
        format!("redis://127.0.0.1:{store_port}/0"),
        "--history-log".into(),
        work.join(format!("history/{id}.jsonl"))
            .display()
            .to_string(),
    ];
    // Short lease and liveness timings, so a run sees many failovers.
    args.extend(
        FAST_LEASE_ARGS
            .iter()
            .chain(FAST_LIVENESS_ARGS.iter())
            .map(|s| s.to_string()),
    );
    // Garbage collection runs every second through the faults: the reconciler's superseded
    // jobs (beyond the last 2 of each target) are collected while leaders are killed, and the
    // `nothing_live_collected` invariant judges what it deleted. The workload's own jobs stay
    // (they are younger than the default retention).
    args.extend(
        [
            "--gc-interval",
            "1s",
            "--reconciler-jobs-kept",
            "2",
            // The run's schedule fires every second.
            "--min-schedule-interval",
            "1s",
            // The run's webhook receiver listens on loopback.
            "--webhook-allow-private",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    if i > 0 {
        // Peers share the first node's signing key and certificate.
        for (flag, file) in [
            ("--signing-key", "signing-key.json"),
            ("--tls-cert", "tls/server.crt"),
            ("--tls-key", "tls/server.key"),
        ] {
            args.push(flag.into());
            args.push(first_data.join(file).display().to_string());
        }
    }
    args.extend(o.unsafety.node_flags().iter().map(|s| s.to_string()));
    args
}

/// Waits until the node at `url` answers `/readyz` (60 s at most), failing at once if it exits.
async fn wait_ready(id: &str, proc: &mut Member, tls: &TlsOptions, url: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        proc.check_running()?;
        let http = flux_core::client::http_client(tls, None);
        // The CA file appears when the first node has made it.
        if let Ok(http) = http
            && ready(&http, url).await
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{id} did not become ready; see {}",
                proc.launch.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Cluster {
    /// Starts Redis, the nodes (one after the other: the first makes the CA, the signing key
    /// and the admin token the others share) and the agents, and waits until every agent is
    /// online.
    pub(super) async fn start(o: &Opts, work: &Path) -> Result<Cluster> {
        for dir in ["redis", "history", "runs", "marks", "logs"] {
            std::fs::create_dir_all(work.join(dir))?;
        }
        let redis_port = try_free_port()?;
        let redis = Member::start(
            "redis-server",
            &o.redis_server,
            redis_args(redis_port, &work.join("redis")),
            work.join("logs/redis.out"),
        )?;
        wait_redis(redis_port).await?;
        let mut proxies = Vec::new();
        for _ in 0..o.nodes {
            proxies.push(FaultProxy::start(redis_port).await?);
        }
        let tls = TlsOptions {
            ca_file: Some(work.join("node-0").join("tls/ca.crt")),
            insecure: false,
        };
        let (nodes, admin) = Cluster::start_nodes(o, work, &proxies, &tls).await?;
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let api = ApiClient::new(urls, Some(admin.clone()), &tls)?;
        let mut cluster = Cluster {
            work: work.to_path_buf(),
            redis,
            redis_port,
            proxies,
            nodes,
            agents: Vec::new(),
            agent_ids: Vec::new(),
            api,
            tls,
            admin,
        };
        for i in 0..o.agents {
            cluster.start_agent(o, i).await?;
        }
        cluster.wait_agents_online().await?;
        Ok(cluster)
    }

    /// Starts one node per proxy and waits for each to be ready; returns them with the admin
    /// token the first one made.
    async fn start_nodes(
        o: &Opts,
        work: &Path,
        proxies: &[FaultProxy],
        tls: &TlsOptions,
    ) -> Result<(Vec<Node>, String)> {
        let fluxd = o.bin_dir.join("fluxd");
        let first_data = work.join("node-0");
        let mut nodes: Vec<Node> = Vec::new();
        let mut admin = String::new();
        for (i, proxy) in proxies.iter().enumerate() {
            let id = format!("chaos-node-{i}");
            let port = try_free_port()?;
            let url = format!("https://127.0.0.1:{port}");
            let args = node_args(o, work, i, &id, port, proxy.port);
            let mut proc =
                Member::start(&id, &fluxd, os(&args), work.join(format!("logs/{id}.log")))?;
            wait_ready(&id, &mut proc, tls, &url).await?;
            if i == 0 {
                admin = std::fs::read_to_string(first_data.join("admin.token"))
                    .context("reading the first node's admin token")?
                    .trim()
                    .to_string();
            }
            nodes.push(Node {
                api: ApiClient::new(vec![url.clone()], Some(admin.clone()), tls)?,
                id,
                url,
                proc,
            });
        }
        Ok((nodes, admin))
    }

    /// Mints agent `i`'s token and starts it, knowing every node.
    async fn start_agent(&mut self, o: &Opts, i: usize) -> Result<()> {
        let work = &self.work;
        let id = format!("chaos-agent-{i}");
        let v: serde_json::Value = self
            .api
            .post(
                "/v1/tokens",
                &serde_json::json!({"tenant": TENANT, "role": "agent", "node_id": id, "ttl_secs": 86400}),
            )
            .await
            .context("creating an agent token")?;
        let token_file = work.join(format!("{id}.token"));
        std::fs::write(&token_file, v["token"].as_str().unwrap_or_default())?;
        let mut args: Vec<String> = Vec::new();
        for n in &self.nodes {
            args.push("--server".into());
            args.push(n.url.clone());
        }
        let ca = self.tls.ca_file.clone().unwrap_or_default();
        args.extend([
            "--ca".into(),
            ca.display().to_string(),
            "--token-file".into(),
            token_file.display().to_string(),
            "--label".into(),
            "chaos=1".into(),
            "--poll-secs".into(),
            "5".into(),
            "--state-dir".into(),
            work.join(format!("{id}.state")).display().to_string(),
        ]);
        let agent = Member::start(
            &id,
            &o.bin_dir.join("flux-agent"),
            os(&args),
            work.join(format!("logs/{id}.log")),
        )?;
        self.agents.push(agent);
        self.agent_ids.push(id);
        Ok(())
    }

    async fn wait_agents_online(&self) -> Result<()> {
        let want = self.agent_ids.len();
        let api = &self.api;
        poll(
            "every agent online",
            Duration::from_secs(60),
            || async move {
                let agents: Vec<flux_core::model::Agent> = api.get("/v1/agents").await.ok()?;
                let online = agents
                    .iter()
                    .filter(|a| a.state == flux_core::model::AgentState::Online)
                    .count();
                (online >= want).then_some(())
            },
        )
        .await
    }

    /// `(index, epoch)` of each node that says it leads, among those answering within a second.
    async fn leaders(&self) -> Vec<(usize, u64)> {
        let asks = self.nodes.iter().enumerate().map(|(i, n)| async move {
            let v = status(n).await?;
            (v["leader"] == true).then(|| (i, v["epoch"].as_u64().unwrap_or(0)))
        });
        futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// The node that leads now (the one with the newest epoch if several claim it).
    async fn leader(&self) -> Result<(usize, u64)> {
        poll("a leader", FAILOVER_LIMIT, || async {
            self.leaders().await.into_iter().max_by_key(|(_, e)| *e)
        })
        .await
    }

    /// Time until some node leads under an epoch newer than `old`. Each node is watched on its
    /// own, so a frozen node's slow answers do not delay seeing another one lead.
    async fn failover(&self, old: u64, since: Instant) -> Option<u64> {
        let watchers = self.nodes.iter().map(|n| {
            Box::pin(async move {
                loop {
                    if let Some(v) = status(n).await
                        && v["leader"] == true
                        && v["epoch"].as_u64().is_some_and(|e| e > old)
                    {
                        return since.elapsed().as_millis() as u64;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        });
        tokio::time::timeout(FAILOVER_LIMIT, futures::future::select_all(watchers))
            .await
            .ok()
            .map(|(ms, _, _)| ms)
    }

    pub(super) fn drift(&self, agent: &str) {
        let _ = std::fs::remove_file(self.work.join("marks").join(agent));
    }

    /// Carries out one fault: injects it, holds it, heals it.
    pub(super) async fn inject(&mut self, f: &Fault, started_ms: u64) -> Result<FaultRun> {
        let hold = Duration::from_millis(f.hold_ms);
        let mut run = FaultRun {
            planned: f.clone(),
            started_ms,
            hit: String::new(),
            failover_ms: None,
        };
        if f.scenario.hits_leader() {
            let Ok((l, epoch)) = self.leader().await else {
                // No leader to hit: the checker reports the missing failover.
                run.hit = "(no leader)".into();
                tokio::time::sleep(hold).await;
                return Ok(run);
            };
            run.hit = self.nodes[l].id.clone();
            let t0 = Instant::now();
            match f.scenario {
                Scenario::LeaderKill => self.nodes[l].proc.kill9(),
                Scenario::LeaderPause => self.nodes[l].proc.signal(Signal::SIGSTOP),
                Scenario::NetworkFreeze => self.proxies[l].freeze(),
                _ => self.proxies[l].cut(),
            }
            let (failover, ()) = tokio::join!(self.failover(epoch, t0), tokio::time::sleep(hold));
            run.failover_ms = failover;
            match f.scenario {
                Scenario::LeaderKill => self.nodes[l].proc.spawn()?,
                Scenario::LeaderPause => self.nodes[l].proc.signal(Signal::SIGCONT),
                _ => self.proxies[l].heal(),
            }
            return Ok(run);
        }
        match f.scenario {
            Scenario::AgentKill => {
                let i = f.target as usize % self.agents.len().max(1);
                run.hit = self.agent_ids[i].clone();
                self.agents[i].kill9();
                self.drift(&self.agent_ids[i]);
                tokio::time::sleep(hold).await;
                self.agents[i].spawn()?;
            }
            _ => {
                run.hit = "redis".into();
                self.redis.kill9();
                tokio::time::sleep(hold).await;
                self.redis.spawn()?;
                wait_redis(self.redis_port).await?;
            }
        }
        Ok(run)
    }

    /// Fails if a process the run relies on has died by itself.
    pub(super) fn check_alive(&mut self) -> Result<()> {
        self.redis.check_running()?;
        for n in &mut self.nodes {
            n.proc.check_running()?;
        }
        for a in &mut self.agents {
            a.check_running()?;
        }
        Ok(())
    }
}
