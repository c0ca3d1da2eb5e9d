//! `flux-agent`, the process that runs on each target machine. It connects out to the control
//! plane, long-polls for tasks, executes them in their own process group and reports output and
//! exit codes.

mod executor;
mod simulate;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use flux_core::client::{ApiClient, ClientError, TlsOptions, backoff};
use flux_core::model::{
    AttemptResult, CommandSpec, Heartbeat, HeartbeatReply, Outcome, OutputChunk, RegisterAgent,
    Stream, Task,
};
use flux_core::redact::Redactor;
use reqwest::{Method, StatusCode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// FluxForge agent.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
struct Args {
    /// Control-plane URL; give several (or a comma-separated list) to fail over between them.
    #[arg(
        long = "server",
        env = "FLUX_SERVER",
        value_delimiter = ',',
        required = true
    )]
    servers: Vec<String>,
    /// Agent token (role agent); prefer --token-file.
    #[arg(long, env = "FLUX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the agent token.
    #[arg(long, env = "FLUX_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for the server.
    #[arg(long, env = "FLUX_CA")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long, env = "FLUX_INSECURE")]
    insecure: bool,
    /// Tasks run at the same time.
    #[arg(long, env = "FLUX_SLOTS", default_value_t = 4)]
    slots: u32,
    /// Labels as key=value (repeatable).
    #[arg(long = "label", env = "FLUX_LABELS", value_delimiter = ',', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Long-poll duration asked of the server.
    #[arg(long, default_value_t = 25)]
    poll_secs: u64,
    /// Directory where the agent records the process groups of running jobs, so that after a
    /// crash the restarted agent kills what was left running (its attempts are rerun).
    #[arg(long, env = "FLUX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    #[command(flatten)]
    simulate: simulate::SimulateArgs,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} must be key=value"))
}

/// Attempts running here, with the token that cancels each.
type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// How tasks are carried out.
enum Exec {
    /// Real processes (`sh -c` or an argv) through [`executor::run`].
    Real {
        /// Where running jobs' process groups are recorded (see `--state-dir`).
        state_dir: Option<PathBuf>,
    },
    /// No process: wait `run`, print one line, exit 0 (see `--simulate`).
    Simulated { run: Duration },
}

/// What every agent of this process has in common.
struct Profile {
    labels: BTreeMap<String, String>,
    slots: u32,
    hostname: Option<String>,
    poll_secs: u64,
    exec: Exec,
}

impl Profile {
    fn new(args: &Args, exec: Exec) -> Profile {
        Profile {
            labels: args.labels.iter().cloned().collect(),
            slots: args.slots,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
            poll_secs: args.poll_secs,
            exec,
        }
    }
}

struct Agent {
    api: ApiClient,
    /// Node id from the agent token; the server checks the token, this is for logs and jobs.
    node_id: String,
    profile: Arc<Profile>,
    running: Running,
    heartbeat: Mutex<Duration>,
}

fn running_ids(running: &Running) -> Vec<String> {
    let mut v: Vec<String> = running
        .lock()
        .expect("running map")
        .keys()
        .cloned()
        .collect();
    v.sort();
    v
}

fn cancel_attempts(running: &Running, ids: &[String]) {
    let map = running.lock().expect("running map");
    for id in ids {
        if let Some(t) = map.get(id) {
            tracing::info!(attempt = %id, "cancel requested by the control plane");
            t.cancel();
        }
    }
}

/// Retries `f` on transport errors and 429/5xx with full-jitter backoff; gives up on other API
/// errors (returned) or when `stop` fires.
async fn with_retry<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut f: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut attempt = 0u32;
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let retryable = match &e {
                    ClientError::Transport { .. } | ClientError::Decode { .. } => true,
                    ClientError::Api { status, .. } => {
                        *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
                    }
                    ClientError::Config(_) => false,
                };
                if !retryable {
                    return Err(e);
                }
                let mut delay =
                    backoff(attempt, Duration::from_millis(100), Duration::from_secs(10));
                if let ClientError::Api {
                    retry_after: Some(s),
                    ..
                } = &e
                {
                    delay = delay.max(Duration::from_secs(*s));
                }
                tracing::warn!(error = %e, ?delay, "{what} failed; retrying");
                attempt = attempt.saturating_add(1);
                tokio::select! {
                    _ = stop.cancelled() => return Err(e),
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

impl Agent {
    fn new(api: ApiClient, node_id: String, profile: Arc<Profile>) -> Agent {
        Agent {
            api,
            node_id,
            profile,
            running: Arc::default(),
            heartbeat: Mutex::new(Duration::from_secs(2)),
        }
    }

    /// Waits (until `deadline` at most) for the running tasks to report and go away.
    async fn wait_idle(&self, deadline: tokio::time::Instant) {
        while !self.running.lock().expect("running map").is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn register(&self, stop: &CancellationToken) -> Result<(), ClientError> {
        let req = RegisterAgent {
            labels: self.profile.labels.clone(),
            slots: Some(self.profile.slots),
            hostname: self.profile.hostname.clone(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            running: running_ids(&self.running),
        };
        let reply: HeartbeatReply = with_retry(stop, "register", || {
            self.api.post("/v1/agent/register", &req)
        })
        .await?;
        self.apply_reply(&reply);
        match self.profile.exec {
            Exec::Real { .. } => {
                tracing::info!(server = %self.api.server(), node = %self.node_id, "registered")
            }
            Exec::Simulated { .. } => {
                tracing::debug!(server = %self.api.server(), node = %self.node_id, "registered")
            }
        }
        Ok(())
    }

    fn apply_reply(&self, reply: &HeartbeatReply) {
        if reply.heartbeat_interval_ms > 0 {
            *self.heartbeat.lock().expect("heartbeat") =
                Duration::from_millis(reply.heartbeat_interval_ms);
        }
        cancel_attempts(&self.running, &reply.cancel);
    }

    async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let every = *self.heartbeat.lock().expect("heartbeat");
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let hb = Heartbeat {
                running: running_ids(&self.running),
            };
            match self
                .api
                .post::<HeartbeatReply, _>("/v1/agent/heartbeat", &hb)
                .await
            {
                Ok(reply) => self.apply_reply(&reply),
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                    // The control plane forgot us (restored from backup, say): register again.
                    let _ = self.register(&stop).await;
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    async fn poll_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut after = 0u64;
        let mut failures = 0u32;
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let path = format!(
                "/v1/agent/tasks?after={after}&wait_secs={}",
                self.profile.poll_secs
            );
            let timeout = Duration::from_secs(self.profile.poll_secs + 15);
            let polled = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = self.api.call::<Vec<Task>>(Method::GET, &path, None, timeout) => r,
            };
            match polled {
                Ok(tasks) => {
                    failures = 0;
                    for t in tasks {
                        after = after.max(t.revision);
                        self.handle(t, &stop);
                    }
                }
                Err(
                    e @ ClientError::Api {
                        status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN,
                        ..
                    },
                ) => {
                    return Err(anyhow::anyhow!(
                        "the control plane refused this agent's token: {e}"
                    ));
                }
                Err(e) => {
                    let delay = backoff(
                        failures,
                        Duration::from_millis(200),
                        Duration::from_secs(15),
                    );
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, ?delay, "poll failed; reconnecting");
                    tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    // Re-register so the control plane learns what is still running here.
                    if self.register(&stop).await.is_err() {
                        continue;
                    }
                }
            }
        }
    }

    fn handle(self: &Arc<Self>, task: Task, stop: &CancellationToken) {
        if task.cancel {
            cancel_attempts(&self.running, std::slice::from_ref(&task.attempt_id));
            return;
        }
        let token = {
            let mut map = self.running.lock().expect("running map");
            if map.contains_key(&task.attempt_id) {
                return;
            }
            let t = stop.child_token();
            map.insert(task.attempt_id.clone(), t.clone());
            t
        };
        let me = self.clone();
        tokio::spawn(async move {
            let id = task.attempt_id.clone();
            me.execute(task, token).await;
            me.running.lock().expect("running map").remove(&id);
        });
    }

    async fn execute(&self, task: Task, cancel: CancellationToken) {
        let id = task.attempt_id.clone();
        let stop = CancellationToken::new();
        let start_path = format!("/v1/agent/attempts/{id}/start");
        let empty = serde_json::json!({});
        match with_retry(&stop, "start", || {
            self.api.post::<serde_json::Value, _>(&start_path, &empty)
        })
        .await
        {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(attempt = %id, error = %e, "not starting: the control plane refused");
                return;
            }
        }
        tracing::debug!(attempt = %id, command = %task.command.display(), "command");
        let (tx, mut rx) = mpsc::channel::<executor::Chunk>(64);
        // Secret values never leave the agent: each stream is masked before upload.
        let secrets: Vec<String> = task.secret_env.values().cloned().collect();
        let run = match &self.profile.exec {
            Exec::Real { state_dir } => {
                tracing::info!(attempt = %id, "starting");
                let spec = executor::ExecSpec {
                    command: match task.command {
                        CommandSpec::Shell(s) => executor::CommandSpec::Shell(s),
                        CommandSpec::Argv(v) => executor::CommandSpec::Argv(v),
                    },
                    env: {
                        let mut env = task.env;
                        env.extend(task.secret_env);
                        env.insert("FLUX_JOB_ID".into(), task.job_id.clone());
                        env.insert("FLUX_ATTEMPT_ID".into(), id.clone());
                        env.insert("FLUX_NODE_ID".into(), self.node_id.clone());
                        env
                    },
                    workdir: task.workdir.map(PathBuf::from),
                    timeout: Some(Duration::from_secs(task.timeout_secs)),
                    track: state_dir.as_ref().map(|d| d.join(&id)),
                };
                tokio::spawn(executor::run(spec, tx, cancel.clone()))
            }
            Exec::Simulated { run } => {
                let line = format!("simulated {} on {}\n", task.job_id, self.node_id);
                tokio::spawn(executor::simulate(
                    *run,
                    Duration::from_secs(task.timeout_secs),
                    line,
                    tx,
                    cancel.clone(),
                ))
            }
        };
        let out_path = format!("/v1/agent/attempts/{id}/output");
        let mut seq = 0u64;
        let mut redact = [Redactor::new(&secrets), Redactor::new(&secrets)];
        let mut pending: Vec<(Stream, Vec<u8>)> = Vec::new();
        let mut open = true;
        while open || !pending.is_empty() {
            if pending.is_empty() {
                match rx.recv().await {
                    Some(chunk) => {
                        let (stream, r) = match chunk.stream {
                            executor::StreamKind::Stdout => (Stream::Stdout, &mut redact[0]),
                            executor::StreamKind::Stderr => (Stream::Stderr, &mut redact[1]),
                        };
                        pending.push((stream, r.push(&chunk.data)));
                    }
                    None => {
                        open = false;
                        pending.push((Stream::Stdout, redact[0].finish()));
                        pending.push((Stream::Stderr, redact[1].finish()));
                    }
                }
            }
            let (stream, data) = pending.remove(0);
            if data.is_empty() {
                continue;
            }
            let body = OutputChunk {
                seq,
                stream,
                data: String::from_utf8_lossy(&data).into_owned(),
            };
            match with_retry(&stop, "output upload", || {
                self.api.post::<serde_json::Value, _>(&out_path, &body)
            })
            .await
            {
                Ok(_) => seq += 1,
                Err(e) if e.status() == Some(StatusCode::GONE) => {
                    tracing::info!(attempt = %id, "attempt taken away; stopping it");
                    cancel.cancel();
                }
                Err(e) => tracing::warn!(attempt = %id, error = %e, "output chunk not stored"),
            }
        }
        let outcome = run.await.unwrap_or_else(|e| {
            executor::Outcome::FailedToStart(format!("executor task failed: {e}"))
        });
        let result = match outcome {
            executor::Outcome::Exited(code) => AttemptResult {
                outcome: Outcome::Exited,
                exit_code: Some(code),
                signal: None,
                message: None,
            },
            executor::Outcome::Signaled(sig) => AttemptResult {
                outcome: Outcome::Signaled,
                exit_code: None,
                signal: Some(sig),
                message: None,
            },
            executor::Outcome::TimedOut => AttemptResult {
                outcome: Outcome::TimedOut,
                exit_code: None,
                signal: None,
                message: None,
            },
            executor::Outcome::Cancelled => AttemptResult {
                outcome: Outcome::Cancelled,
                exit_code: None,
                signal: None,
                message: None,
            },
            executor::Outcome::FailedToStart(m) => AttemptResult {
                outcome: Outcome::FailedToStart,
                exit_code: None,
                signal: None,
                message: Some(m),
            },
        };
        if let Exec::Real { .. } = self.profile.exec {
            tracing::info!(attempt = %id, ?result, "finished");
        }
        let path = format!("/v1/agent/attempts/{id}/result");
        if let Err(e) = with_retry(&stop, "result report", || {
            self.api.post::<serde_json::Value, _>(&path, &result)
        })
        .await
        {
            tracing::warn!(attempt = %id, error = %e, "result not recorded");
        }
    }
}

/// Cancels `stop` on SIGTERM or SIGINT.
fn stop_on_signals(stop: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
        tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
        tracing::info!("stopping: cancelling running tasks");
        stop.cancel();
    });
}

async fn run(args: Args) -> Result<ExitCode> {
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading token file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => anyhow::bail!("an agent token is required (--token-file or FLUX_TOKEN)"),
    };
    let tls = TlsOptions {
        ca_file: args.ca.clone(),
        insecure: args.insecure,
    };
    if let Some(n) = args.simulate.simulate {
        return simulate::run(&args, n, token, &tls).await;
    }
    let node_id = flux_core::auth::peek_claims(&token)
        .and_then(|c| c.node_id)
        .context("the token is not an agent token (it carries no node id)")?;
    if let Some(dir) = &args.state_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        for attempt in executor::reap_orphans(dir) {
            tracing::warn!(%attempt, "killed a job left running by a previous agent process");
        }
    }
    let api = ApiClient::new(args.servers.clone(), Some(token), &tls)?;
    let profile = Profile::new(
        &args,
        Exec::Real {
            state_dir: args.state_dir.clone(),
        },
    );
    let agent = Arc::new(Agent::new(api, node_id, Arc::new(profile)));
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    match agent.register(&stop).await {
        Ok(()) => {}
        Err(e @ ClientError::Api { .. }) => anyhow::bail!("registration refused: {e}"),
        Err(e) => anyhow::bail!("registration failed: {e}"),
    }
    tokio::spawn(agent.clone().heartbeat_loop(stop.clone()));
    let result = agent.clone().poll_loop(stop.clone()).await;
    stop.cancel();
    // Let running tasks report their cancellation.
    agent
        .wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    result.map(|()| ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match run(args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flux-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
