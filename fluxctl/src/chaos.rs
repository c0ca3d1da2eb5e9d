//! `fluxctl chaos run`: starts a local cluster (real `redis-server`, `fluxd` nodes and
//! `flux-agent` processes), runs a job and desired-state workload, injects the seeded fault
//! schedule, heals, and hands what it saw to the checker in [`flux_core::chaos`].
//!
//! Every `fluxd` reaches Redis through its own [`FaultProxy`] (partitions), records its
//! history with `--history-log`, and every job the workload runs appends its attempt id to a
//! file named after the job, so the checker can compare the work done on agents with what the
//! store holds.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use flux_core::chaos::faultproxy::FaultProxy;
use flux_core::chaos::{
    self, FailoverSeen, Fault, HistoryEvent, Invariant, JobSeen, Observations, Scenario, Spread,
    TargetSeen, Violation,
};
use flux_core::client::{ApiClient, ClientError, TlsOptions, erased};
use flux_core::model::{Attempt, Job, SubmitJob, now_ms};
use flux_core::reconcile::StateView;
use flux_core::state::{StateSpec, Targets};
use futures::StreamExt;
use nix::sys::signal::Signal;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

/// What `fluxctl chaos run` was asked for.
#[derive(Debug, Clone)]
pub struct Opts {
    pub scenarios: Vec<Scenario>,
    pub duration: Duration,
    pub seed: u64,
    pub nodes: usize,
    pub agents: usize,
    pub bin_dir: PathBuf,
    pub redis_server: PathBuf,
    pub work_dir: Option<PathBuf>,
    pub keep: bool,
    pub heal_timeout: Duration,
    /// Jobs submitted per second by the workload.
    pub rate: u32,
    pub unsafety: Unsafety,
}

/// Testing-only ways to weaken the nodes, to show what protects the invariants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unsafety {
    /// The nodes as they ship.
    None,
    /// A leader that loses its lease keeps working until a write of it is fenced: fencing
    /// alone must keep the invariants.
    IgnoreLease,
    /// Lease ignored and fencing off: two leaders write at once and the checker must say so.
    NoFencing,
}

impl Unsafety {
    fn node_flags(self) -> &'static [&'static str] {
        match self {
            Unsafety::None => &[],
            Unsafety::IgnoreLease => &["--unsafe-ignore-lease"],
            Unsafety::NoFencing => &["--unsafe-ignore-lease", "--unsafe-no-fencing"],
        }
    }
}

/// One fault as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRun {
    #[serde(flatten)]
    pub planned: Fault,
    /// When it was injected, from the start of the workload.
    pub started_ms: u64,
    /// What it hit (node or agent id, `redis`).
    pub hit: String,
    /// Leader faults: time from the fault until another term's leader answered.
    pub failover_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    pub submitted: usize,
    pub acknowledged: usize,
    /// Submissions that never got an answer (they may or may not exist; not judged).
    pub unacknowledged: usize,
    pub succeeded: usize,
    pub executions: usize,
    pub state_targets: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryStats {
    pub leader_writes: usize,
    /// Leader writes refused because a newer epoch existed (fencing at work).
    pub fenced: usize,
    pub results: usize,
    /// Distinct epochs that wrote.
    pub epochs: usize,
    /// Lines that did not parse (a node killed in the middle of a line).
    pub torn_lines: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvariantResult {
    pub invariant: Invariant,
    pub held: bool,
    pub violations: usize,
}

/// The report of a run (`-o json` prints it whole).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
    pub duration_secs: f64,
    pub nodes: usize,
    pub agents: usize,
    pub unsafety: Unsafety,
    pub faults: Vec<FaultRun>,
    pub failover: Spread,
    pub workload: Workload,
    pub history: HistoryStats,
    pub invariants: Vec<InvariantResult>,
    /// The first violations found (at most 50).
    pub violations: Vec<Violation>,
    pub passed: bool,
    /// Where the logs and histories are, when kept.
    pub work_dir: Option<PathBuf>,
}

const TENANT: &str = "default";
const STATE: &str = "chaos-marks";
/// Longest wait for a new leader after a leader fault.
const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// Longest a single submission is retried before it counts as unacknowledged.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(20);

/// A child process with the command that started it, so it can be restarted the same way.
struct Proc {
    name: String,
    bin: PathBuf,
    args: Vec<OsString>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    fn start(name: &str, bin: &Path, args: Vec<OsString>, log: PathBuf) -> Result<Proc> {
        let mut p = Proc {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            args,
            log,
            child: None,
        };
        p.spawn()?;
        Ok(p)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut cmd = Command::new(&self.bin);
        // The cluster is configured by its arguments only, not by the caller's settings.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("FLUX_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .env("FLUX_LOG", "info")
            .spawn()
            .with_context(|| format!("starting {} ({})", self.name, self.bin.display()))?;
        self.child = Some(child);
        Ok(())
    }

    fn signal(&self, sig: Signal) {
        if let Some(c) = &self.child {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.id() as i32), sig);
        }
    }

    /// SIGKILL and reap.
    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Fails if the process has exited (it should be running).
    fn check_running(&mut self) -> Result<()> {
        if let Some(c) = &mut self.child
            && let Ok(Some(status)) = c.try_wait()
        {
            bail!(
                "{} exited ({status}); see {}",
                self.name,
                self.log.display()
            );
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGKILL also ends a process stopped with SIGSTOP.
        self.kill9();
    }
}

struct Node {
    id: String,
    url: String,
    proc: Proc,
    /// Client bound to this node only.
    api: ApiClient,
}

struct Cluster {
    work: PathBuf,
    redis: Proc,
    redis_port: u16,
    proxies: Vec<FaultProxy>,
    nodes: Vec<Node>,
    agents: Vec<Proc>,
    agent_ids: Vec<String>,
    /// Client that fails over between all nodes.
    api: ApiClient,
    tls: TlsOptions,
    admin: String,
}

/// A node's `/v1/status`, `None` unless it answers within a second.
async fn status(n: &Node) -> Option<serde_json::Value> {
    n.api
        .call(Method::GET, "/v1/status", None, Duration::from_secs(1))
        .await
        .ok()
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn os(args: &[String]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

/// Polls `f` every 50 ms until it gives `Some`, or fails after `limit` with `what`.
async fn poll<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

impl Cluster {
    async fn start(o: &Opts, work: &Path) -> Result<Cluster> {
        for dir in ["redis", "history", "runs", "marks", "logs"] {
            std::fs::create_dir_all(work.join(dir))?;
        }
        let fluxd = o.bin_dir.join("fluxd");
        let agent_bin = o.bin_dir.join("flux-agent");
        let redis_port = free_port()?;
        let redis = Proc::start(
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
        let mut nodes: Vec<Node> = Vec::new();
        let first_data = work.join("node-0");
        let ca = first_data.join("tls/ca.crt");
        let tls = TlsOptions {
            ca_file: Some(ca.clone()),
            insecure: false,
        };
        let mut admin = String::new();
        for (i, proxy) in proxies.iter().enumerate() {
            let id = format!("chaos-node-{i}");
            let port = free_port()?;
            let url = format!("https://127.0.0.1:{port}");
            let mut args: Vec<String> = vec![
                "--listen".into(),
                format!("127.0.0.1:{port}"),
                "--data-dir".into(),
                work.join(format!("node-{i}")).display().to_string(),
                "--node-id".into(),
                id.clone(),
                "--store".into(),
                format!("redis://127.0.0.1:{}/0", proxy.port),
                "--history-log".into(),
                work.join(format!("history/{id}.jsonl"))
                    .display()
                    .to_string(),
            ];
            // Short lease and liveness timings, so a run sees many failovers.
            args.extend(
                flux_core::testing::FAST_LEASE_ARGS
                    .iter()
                    .chain(flux_core::testing::FAST_LIVENESS_ARGS.iter())
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
            let mut proc =
                Proc::start(&id, &fluxd, os(&args), work.join(format!("logs/{id}.log")))?;
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                proc.check_running()?;
                let http = flux_core::client::http_client(&tls, None);
                // The CA file appears when the first node has made it.
                if let Ok(http) = http
                    && ready(&http, &url).await
                {
                    break;
                }
                if Instant::now() >= deadline {
                    bail!("{id} did not become ready; see {}", proc.log.display());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if i == 0 {
                admin = std::fs::read_to_string(first_data.join("admin.token"))
                    .context("reading the first node's admin token")?
                    .trim()
                    .to_string();
            }
            nodes.push(Node {
                api: ApiClient::new(vec![url.clone()], Some(admin.clone()), &tls)?,
                id,
                url,
                proc,
            });
        }
        let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
        let api = ApiClient::new(urls.clone(), Some(admin.clone()), &tls)?;
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
            let id = format!("chaos-agent-{i}");
            let v: serde_json::Value = cluster
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
            for u in &urls {
                args.push("--server".into());
                args.push(u.clone());
            }
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
            cluster.agents.push(Proc::start(
                &id,
                &agent_bin,
                os(&args),
                work.join(format!("logs/{id}.log")),
            )?);
            cluster.agent_ids.push(id);
        }
        let want = cluster.agent_ids.len();
        let api = &cluster.api;
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
        .await?;
        Ok(cluster)
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

    fn drift(&self, agent: &str) {
        let _ = std::fs::remove_file(self.work.join("marks").join(agent));
    }

    /// Carries out one fault: injects it, holds it, heals it.
    async fn inject(&mut self, f: &Fault, started_ms: u64) -> Result<FaultRun> {
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
    fn check_alive(&mut self) -> Result<()> {
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

/// The workload's jobs: each appends its attempt id to `runs/<job id>`.
fn job_command(work: &Path) -> String {
    format!(
        "echo \"$FLUX_ATTEMPT_ID\" >> '{}/'\"$FLUX_JOB_ID\"",
        work.join("runs").display()
    )
}

/// Submits jobs at `rate` per second until `stop`; returns the acknowledged ids and the
/// number of submissions never acknowledged.
async fn submit_jobs(
    api: Arc<ApiClient>,
    command: String,
    seed: u64,
    rate: u32,
    stop: CancellationToken,
) -> (Vec<String>, usize, usize) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(Mutex::new(0usize));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = 4u32;
    let every = Duration::from_secs_f64(workers as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (api, command, stop) = (api.clone(), command.clone(), stop.clone());
        let (acked, lost, sent) = (acked.clone(), lost.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // After a stall, go on at the same pace rather than catching up in a burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                n += 1;
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let req = SubmitJob {
                    command: Some(command.clone()),
                    max_attempts: Some(10),
                    timeout_secs: Some(30),
                    idempotency_key: Some(format!("chaos-{seed:x}-{w}-{n}")),
                    ..SubmitJob::default()
                };
                match submit_one(&api, &req).await {
                    Some(id) => acked.lock().expect("acked").push(id),
                    None => *lost.lock().expect("lost") += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let lost = *lost.lock().expect("lost");
    (acked, lost, sent.load(std::sync::atomic::Ordering::Relaxed))
}

/// One submission, retried with the same idempotency key through any node until acknowledged.
async fn submit_one(api: &ApiClient, req: &SubmitJob) -> Option<String> {
    let deadline = Instant::now() + SUBMIT_PATIENCE;
    let mut delay = Duration::from_millis(50);
    while Instant::now() < deadline {
        match api
            .call::<Job>(
                Method::POST,
                "/v1/jobs",
                Some(&erased::Body(req)),
                Duration::from_secs(3),
            )
            .await
        {
            Ok(j) => return Some(j.job_id),
            Err(ClientError::Api { status, .. })
                if status.is_client_error()
                    && status != StatusCode::TOO_MANY_REQUESTS
                    && status != StatusCode::REQUEST_TIMEOUT =>
            {
                // Refused for good (the workload is wrong): nothing was created.
                return None;
            }
            Err(_) => {
                // A frozen node holds the request until the timeout: try the next one.
                api.rotate();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
    None
}

async fn declare_state(api: &ApiClient, work: &Path) -> Result<()> {
    let marks = work.join("marks");
    let spec = StateSpec {
        name: STATE.into(),
        targets: Targets {
            agents: Vec::new(),
            labels: [("chaos".to_string(), "1".to_string())].into(),
        },
        check: format!("test -f '{}/'\"$FLUX_NODE_ID\"", marks.display()),
        apply: format!(
            "mkdir -p '{0}' && touch '{0}/'\"$FLUX_NODE_ID\"",
            marks.display()
        ),
        interval_secs: 1,
        timeout_secs: 10,
        env: BTreeMap::new(),
        desired_exit_code: 0,
    };
    let _: StateView = api
        .call(
            Method::PUT,
            &format!("/v1/states/{STATE}"),
            Some(&erased::Body(&spec)),
            Duration::from_secs(10),
        )
        .await
        .context("declaring the run's desired state")?;
    Ok(())
}

/// A job with its attempts; `None` when the store does not know it.
type Seen = Option<(Job, Vec<Attempt>)>;

/// A job's status and attempts, `Ok(None)` when the store does not know it.
async fn job_state(api: &ApiClient, id: &str) -> Result<Seen, ClientError> {
    let job: Job = match api.get(&format!("/v1/jobs/{id}")).await {
        Ok(j) => j,
        Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => return Ok(None),
        Err(e) => return Err(e),
    };
    let attempts: Vec<Attempt> = api.get(&format!("/v1/jobs/{id}/attempts")).await?;
    Ok(Some((job, attempts)))
}

/// Waits until every acknowledged job has finished and every target was repaired after
/// `healed_at` (compliant, with its marker in `marks` made again), or `limit` passes; returns
/// what it last saw of the jobs and targets.
async fn settle(
    api: &ApiClient,
    marks: &Path,
    acked: &[String],
    healed_at: u64,
    limit: Duration,
) -> (BTreeMap<String, Seen>, Vec<TargetSeen>) {
    let deadline = Instant::now() + limit;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut open: BTreeSet<String> = acked.iter().cloned().collect();
    let mut targets = Vec::new();
    loop {
        let checked: Vec<(String, Result<Seen, ClientError>)> =
            futures::stream::iter(open.iter().cloned())
                .map(|id| async move {
                    let r = job_state(api, &id).await;
                    (id, r)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (id, r) in checked {
            if let Ok(v) = r {
                let done = v.as_ref().is_some_and(|(j, _)| j.status.is_terminal());
                seen.insert(id.clone(), v);
                if done {
                    open.remove(&id);
                }
            }
        }
        if let Ok(view) = api.get::<StateView>(&format!("/v1/states/{STATE}")).await {
            targets = view
                .status
                .iter()
                .map(|t| TargetSeen {
                    agent: t.agent.clone(),
                    status: t.status,
                    last_change: t.last_change,
                    marked: marks.join(&t.agent).exists(),
                })
                .collect();
        }
        let converged = !targets.is_empty()
            && targets.iter().all(|t| {
                t.status == flux_core::reconcile::TargetState::Compliant
                    && t.marked
                    && t.last_change.is_some_and(|at| at >= healed_at)
            });
        if (open.is_empty() && converged) || Instant::now() >= deadline {
            return (seen, targets);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn read_history(dir: &Path) -> Result<(Vec<HistoryEvent>, usize)> {
    let mut events = Vec::new();
    let mut torn = 0;
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        let (e, bad) = chaos::parse_history(&text);
        events.extend(e);
        torn += bad;
    }
    Ok((events, torn))
}

/// Runs the whole chaos experiment and judges it. When the run itself fails, the work
/// directory is kept and the error names it and the seed.
pub async fn run(o: Opts, progress: bool) -> Result<Report> {
    if o.nodes < 2 {
        bail!("--nodes must be at least 2 (leader faults need a successor)");
    }
    if o.agents == 0 {
        bail!("--agents must be at least 1");
    }
    for bin in ["fluxd", "flux-agent"] {
        if !o.bin_dir.join(bin).is_file() {
            bail!(
                "{bin} not found in {} (give the directory with --bin-dir)",
                o.bin_dir.display()
            );
        }
    }
    let (work, temp) = match &o.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            if std::fs::read_dir(d)?.next().is_some() {
                bail!("work directory {} is not empty", d.display());
            }
            (d.clone(), None)
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("fluxforge-chaos-")
                .tempdir()?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    match run_in(&o, &work, progress).await {
        Ok(mut report) => {
            report.work_dir = match temp {
                Some(t) if o.keep || !report.passed => Some(t.keep()),
                Some(_) => None,
                None => Some(work),
            };
            Ok(report)
        }
        Err(e) => {
            if let Some(t) = temp {
                let _ = t.keep();
            }
            Err(e.context(format!(
                "chaos run with seed {} failed; logs are in {}",
                o.seed,
                work.display()
            )))
        }
    }
}

async fn run_in(o: &Opts, work: &Path, progress: bool) -> Result<Report> {
    let say = |m: String| {
        if progress {
            eprintln!("chaos: {m}");
        }
    };
    let plan = chaos::schedule(o.seed, &o.scenarios, o.duration.as_millis() as u64);
    say(format!(
        "seed {}: {} faults planned over {:?}; starting {} nodes and {} agents in {}",
        o.seed,
        plan.len(),
        o.duration,
        o.nodes,
        o.agents,
        work.display()
    ));
    let mut cluster = Cluster::start(o, work).await?;
    declare_state(&cluster.api, work).await?;

    let stop = CancellationToken::new();
    let submitter = AbortOnDropHandle::new(tokio::spawn(submit_jobs(
        Arc::new(ApiClient::new(
            cluster.nodes.iter().map(|n| n.url.clone()).collect(),
            Some(cluster.admin.clone()),
            &cluster.tls,
        )?),
        job_command(work),
        o.seed,
        o.rate,
        stop.clone(),
    )));
    let start = Instant::now();
    let mut faults = Vec::new();
    let outcome: Result<()> = async {
        for f in &plan {
            tokio::time::sleep_until((start + Duration::from_millis(f.at_ms)).into()).await;
            cluster.check_alive()?;
            let at = start.elapsed().as_millis() as u64;
            let r = cluster.inject(f, at).await?;
            say(format!(
                "{:>6} ms  {:<13} {:<14} held {} ms{}",
                r.started_ms,
                f.scenario.as_str(),
                r.hit,
                f.hold_ms,
                r.failover_ms
                    .map(|m| format!(", new leader after {m} ms"))
                    .unwrap_or_default()
            ));
            faults.push(r);
        }
        tokio::time::sleep_until((start + o.duration).into()).await;
        cluster.check_alive()
    }
    .await;
    stop.cancel();
    let (acked, unacked, sent) = submitter.await.context("workload task")?;
    outcome?;

    // Healed: everything runs again. Drift every target so convergence is shown afresh.
    let healed_at = now_ms();
    for a in &cluster.agent_ids {
        cluster.drift(a);
    }
    say(format!(
        "faults over; {} jobs acknowledged; waiting for every job and target to settle",
        acked.len()
    ));
    let (jobs, targets) = settle(
        &cluster.api,
        &work.join("marks"),
        &acked,
        healed_at,
        o.heal_timeout,
    )
    .await;
    let (history, torn) = read_history(&work.join("history"))?;

    let mut workload = Workload {
        submitted: sent,
        acknowledged: acked.len(),
        unacknowledged: unacked,
        state_targets: targets.len(),
        ..Workload::default()
    };
    let mut seen_jobs = Vec::new();
    for id in &acked {
        let executions: Vec<String> = std::fs::read_to_string(work.join("runs").join(id))
            .unwrap_or_default()
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        workload.executions += executions.len();
        let (status, attempts) = match jobs.get(id) {
            Some(Some((j, a))) => (
                Some(j.status),
                a.iter().map(|a| a.attempt_id.clone()).collect(),
            ),
            Some(None) => (None, Vec::new()),
            // Never answered: reported as not finished rather than lost.
            None => (Some(flux_core::model::JobStatus::Queued), Vec::new()),
        };
        if status == Some(flux_core::model::JobStatus::Succeeded) {
            workload.succeeded += 1;
        }
        seen_jobs.push(JobSeen {
            job_id: id.clone(),
            status,
            attempts,
            executions,
        });
    }
    let obs = Observations {
        jobs: seen_jobs,
        history,
        targets,
        agents: cluster.agent_ids.clone(),
        healed_at,
        failovers: faults
            .iter()
            .filter(|f| f.planned.scenario.hits_leader())
            .map(|f| FailoverSeen {
                fault: format!("{} at {} ms", f.planned.scenario, f.started_ms),
                failover_ms: f.failover_ms,
            })
            .collect(),
    };
    drop(cluster);
    let mut violations = chaos::check(&obs);
    let invariants = Invariant::ALL
        .into_iter()
        .map(|invariant| {
            let n = violations
                .iter()
                .filter(|v| v.invariant == invariant)
                .count();
            InvariantResult {
                invariant,
                held: n == 0,
                violations: n,
            }
        })
        .collect();
    let count = |f: fn(&HistoryEvent) -> bool| obs.history.iter().filter(|e| f(e)).count();
    let epochs: BTreeSet<u64> = obs
        .history
        .iter()
        .filter_map(|e| match e {
            HistoryEvent::Write { epoch, .. } => Some(*epoch),
            _ => None,
        })
        .collect();
    let history = HistoryStats {
        leader_writes: count(|e| matches!(e, HistoryEvent::Write { .. })),
        fenced: count(|e| matches!(e, HistoryEvent::Fenced { .. })),
        results: count(|e| matches!(e, HistoryEvent::Result { .. })),
        epochs: epochs.len(),
        torn_lines: torn,
    };
    let passed = violations.is_empty();
    violations.truncate(50);
    let failovers: Vec<u64> = faults.iter().filter_map(|f| f.failover_ms).collect();
    Ok(Report {
        seed: o.seed,
        scenarios: o.scenarios.clone(),
        duration_secs: o.duration.as_secs_f64(),
        nodes: o.nodes,
        agents: o.agents,
        unsafety: o.unsafety,
        failover: Spread::of(&failovers),
        faults,
        workload,
        history,
        invariants,
        violations,
        passed,
        work_dir: None,
    })
}
