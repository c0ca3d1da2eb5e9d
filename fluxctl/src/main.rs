//! `fluxctl`, the FluxForge command-line interface: tokens, jobs, desired state, backups, chaos
//! runs and benchmarks, with tables for people and `-o json` for scripts.
//!
//! Exit codes: 0 success; 1 an error (message on stderr); 2 bad usage. `diff` exits 0 when
//! nothing would change, 1 when something would and 2 on an error. `job run --wait` exits
//! with the remote command's exit code, 128+N when it was killed by signal N, 124 on timeout,
//! 130 when cancelled and 127 when it could not start. `chaos run` exits 0 when every
//! invariant held, 1 on a violation and 2 when the run could not be carried out (interrupted
//! included).

mod bench;
mod chaos;
mod config;
mod states;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use flux_core::client::{ApiClient, ClientError, TlsOptions};
use flux_core::model::{
    Agent, Attempt, Job, JobStatus, StoredChunk, SubmitJob, now_ms, parse_duration,
};
use futures::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// FluxForge command-line interface.
#[derive(Parser, Debug)]
#[command(name = "fluxctl", version, about, propagate_version = true)]
struct Cli {
    /// Control-plane URL (overrides the context).
    #[arg(long, global = true, env = "FLUX_SERVER")]
    server: Option<String>,
    /// Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file).
    #[arg(long, global = true, env = "FLUX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true, env = "FLUX_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "FLUX_CA")]
    ca: Option<PathBuf>,
    /// Accept any server certificate (like curl -k).
    #[arg(long, global = true, env = "FLUX_INSECURE")]
    insecure: bool,
    /// Context from the config file to use.
    #[arg(long, global = true, env = "FLUX_CONTEXT")]
    context: Option<String>,
    /// Config file (default ~/.config/fluxforge/config.toml).
    #[arg(long, global = true, env = "FLUX_CONFIG")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "FLUX_OUTPUT"
    )]
    output: Output,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run and inspect jobs.
    #[command(subcommand)]
    Job(JobCmd),
    /// List and inspect agents.
    #[command(subcommand)]
    Agents(AgentsCmd),
    /// Create and revoke tokens (admin).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Declare desired state from a state.toml: create and update its states (and with
    /// --prune delete the tenant's states it does not list).
    Apply(ApplyArgs),
    /// Show what `apply` would change. Exit 0: nothing; 1: changes; 2: error.
    Diff(DiffArgs),
    /// Show objects (desired states with their targets' status).
    #[command(subcommand)]
    Get(GetCmd),
    /// Delete objects.
    #[command(subcommand)]
    Delete(DeleteCmd),
    /// Tenants with their usage, and their quotas.
    #[command(subcommand)]
    Tenants(TenantsCmd),
    /// Read and verify the audit log (admins).
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Back up, verify and restore the whole store (admins of tenant default).
    #[command(subcommand)]
    Backup(BackupCmd),
    /// Cluster status: this node, leader, epoch, agents by state.
    Status,
    /// Show the identity of the current token.
    Whoami,
    /// Manage contexts in the config file.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Benchmarks against a running control plane.
    #[command(subcommand)]
    Bench(BenchCmd),
    /// Fault-injection runs on a local cluster, judged by an invariant checker.
    #[command(subcommand)]
    Chaos(ChaosCmd),
    /// Print shell completions.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
struct ApplyArgs {
    /// State file (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Also delete the tenant's states that the file does not declare.
    #[arg(long)]
    prune: bool,
    /// Show the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Wait until every target is compliant; exit 1 if one fails or the timeout passes.
    #[arg(long, short = 'w')]
    wait: bool,
    /// How long --wait waits.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    timeout: Duration,
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// State file (`-` reads stdin).
    #[arg(short = 'f', long = "filename", value_name = "FILE")]
    file: PathBuf,
    /// Include the deletions `apply --prune` would make.
    #[arg(long)]
    prune: bool,
}

#[derive(Subcommand, Debug)]
enum TenantsCmd {
    /// Tenants with queued and running jobs, agents, states and quotas (admins).
    List,
    /// Create a tenant (admins of tenant default) and print a first admin token for it.
    Create {
        name: String,
        #[arg(long)]
        max_queued: Option<u64>,
        #[arg(long)]
        max_running: Option<u64>,
        #[arg(long)]
        submit_rate: Option<f64>,
        /// Lifetime of the admin token.
        #[arg(long, value_parser = parse_duration, default_value = "24h")]
        token_ttl: Duration,
    },
    /// Show or set a tenant's quota.
    #[command(subcommand)]
    Quota(QuotaCmd),
}

#[derive(Subcommand, Debug)]
enum QuotaCmd {
    Get {
        tenant: String,
    },
    /// Replace a tenant's quota (admins of tenant default); a limit left out is unlimited.
    Set {
        tenant: String,
        /// Jobs waiting for an agent.
        #[arg(long)]
        max_queued: Option<u64>,
        /// Attempts assigned or running at once.
        #[arg(long)]
        max_running: Option<u64>,
        /// Sustained submissions per second (per fluxd node).
        #[arg(long)]
        submit_rate: Option<f64>,
        /// Submissions allowed in a burst.
        #[arg(long, requires = "submit_rate")]
        submit_burst: Option<u64>,
        /// Only if the quota is still at this version (0: never set).
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum AuditCmd {
    /// Print audit records, oldest first.
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Another tenant (admins of tenant default).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Walk the hash chain; exit 1 if a record was altered, removed or cut off.
    Verify {
        #[arg(long, conflicts_with = "all")]
        tenant: Option<String>,
        /// Every tenant (admins of tenant default).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand, Debug)]
enum BackupCmd {
    /// Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout).
    Create {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check a backup file offline: format, every line, object count and checksum.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Restore a backup (verified first). Refuses a store that holds objects unless --force,
    /// which replaces everything. Afterwards the fencing epoch is above every earlier one.
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
enum GetCmd {
    /// Desired states with their targets' status; with a name, the per-target detail.
    States { name: Option<String> },
}

#[derive(Subcommand, Debug)]
enum DeleteCmd {
    /// Delete a desired state (its agents are left as they are).
    State {
        name: String,
        /// Delete only if the state is still at this version.
        #[arg(long)]
        if_version: Option<u64>,
    },
}

#[derive(Subcommand, Debug)]
enum ChaosCmd {
    /// Start a local cluster (redis-server, fluxd nodes, agents), run jobs and a desired state
    /// on it, inject the seeded faults, heal, and check the invariants on the whole history.
    /// Exit 0: every invariant held; 1: a violation; 2: the run itself failed.
    Run(ChaosRunArgs),
    /// Print the fault schedule a seed gives, without running anything.
    Plan(ChaosPlanArgs),
}

#[derive(Args, Debug)]
struct ChaosPlanArgs {
    /// Faults to inject (repeatable or comma-separated): leader-kill, leader-pause,
    /// agent-kill, redis-restart, partition, network-freeze, or all.
    #[arg(long = "scenario", value_delimiter = ',', default_value = "all")]
    scenarios: Vec<String>,
    /// How long faults are injected.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Seed of the fault schedule (default: random, printed); the same seed gives the same
    /// schedule.
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Args, Debug)]
struct ChaosRunArgs {
    #[command(flatten)]
    plan: ChaosPlanArgs,
    /// fluxd nodes (sharing one Redis).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Agents (real flux-agent processes).
    #[arg(long, default_value_t = 3)]
    agents: usize,
    /// Jobs submitted per second during the run.
    #[arg(long, default_value_t = 20)]
    rate: u32,
    /// Directory holding fluxd and flux-agent (default: fluxctl's own directory).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// redis-server to run (default: the one on PATH).
    #[arg(long)]
    redis_server: Option<PathBuf>,
    /// Empty directory for logs, histories and data (default: a temporary one, removed after
    /// a run that passed).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the work directory even when the run passed.
    #[arg(long)]
    keep: bool,
    /// After the faults, how long jobs and states get to settle.
    #[arg(long, value_parser = parse_duration, default_value = "90s")]
    heal_timeout: Duration,
    /// TESTING ONLY: nodes keep leader work after losing their lease (until a write is fenced),
    /// to see fencing alone keep every invariant.
    #[arg(long)]
    unsafe_ignore_lease: bool,
    /// TESTING ONLY: as --unsafe-ignore-lease and with fencing disabled, to see the checker
    /// catch two leaders writing at once.
    #[arg(long)]
    unsafe_no_fencing: bool,
}

impl ChaosPlanArgs {
    fn scenarios(&self) -> Result<Vec<flux_core::chaos::Scenario>> {
        let mut out = Vec::new();
        for s in &self.scenarios {
            if s == "all" {
                out.extend(flux_core::chaos::Scenario::ALL);
            } else {
                out.push(s.parse().map_err(|e: String| anyhow::anyhow!(e))?);
            }
        }
        out.sort();
        out.dedup();
        if out.is_empty() {
            anyhow::bail!("give at least one --scenario");
        }
        Ok(out)
    }

    fn seed(&self) -> u64 {
        self.seed.unwrap_or_else(|| rand::random::<u32>() as u64)
    }
}

#[derive(Subcommand, Debug)]
enum BenchCmd {
    /// Convergence: declare a throwaway state on the agents (all, or those with --label) and
    /// time until every target is compliant; the state is deleted afterwards.
    Converge {
        /// Select agents by label KEY=VALUE (repeatable); default: every registered agent.
        #[arg(long = "label", short = 'l', value_parser = parse_kv)]
        labels: Vec<(String, String)>,
        /// Directory on the agents where the marker files go.
        #[arg(long, default_value = "/tmp/fluxforge-bench")]
        dir: String,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "10m")]
        timeout: Duration,
    },
    /// Submission throughput: jobs acknowledged per second and submission latency, without
    /// waiting for the jobs to run (agents run them afterwards).
    Submit {
        /// Jobs to submit in all.
        #[arg(long, default_value_t = 1000)]
        count: usize,
        /// Submissions in flight at once.
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// Command each job runs.
        #[arg(long, default_value = "true")]
        command: String,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "10m")]
        deadline: Duration,
    },
    /// Job round trip: submit → result, latency percentiles and jobs/s, with submission and
    /// dispatch (created → started on the agent) latencies.
    Jobs {
        /// Jobs to run in all.
        #[arg(long, default_value_t = 500)]
        count: usize,
        /// Jobs in flight at once (each worker submits, waits, repeats).
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
        /// Command each job runs.
        #[arg(long, default_value = "true")]
        command: String,
        /// Pin jobs to one agent.
        #[arg(short, long)]
        node: Option<String>,
        /// Give up after this long.
        #[arg(long, value_parser = parse_duration, default_value = "10m")]
        deadline: Duration,
    },
}

#[derive(Subcommand, Debug)]
enum JobCmd {
    /// Submit a job. One argument is a shell command line; several are an argv.
    Run(RunArgs),
    /// Show one job.
    Get { id: String },
    /// List jobs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        node: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Print a job's output.
    Logs {
        id: String,
        /// Keep streaming until the job ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a job (running jobs are killed with their whole process group).
    Cancel { id: String },
    /// Wait for a job to end; exits like `job run --wait`.
    Wait {
        id: String,
        /// Give up after this long (exit 1).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Show a job's attempts.
    Attempts { id: String },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Agent to run on (default: any online agent of the tenant).
    #[arg(long = "node", short = 'n')]
    node: Option<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Secret environment variable NAME, its value taken from fluxctl's own environment (so it
    /// is never on a command line); masked in the job's output and never shown (repeatable).
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,
    /// Working directory on the agent.
    #[arg(long)]
    workdir: Option<String>,
    /// Kill the job after this long.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// Attempts before giving up when agents are lost.
    #[arg(long)]
    attempts: Option<u32>,
    /// Higher runs first among the tenant's queued jobs (-100 to 100).
    #[arg(long, allow_hyphen_values = true)]
    priority: Option<i32>,
    /// Run on an agent carrying this label KEY=VALUE (repeatable: all of them).
    #[arg(long = "selector", short = 'l', value_parser = parse_kv, conflicts_with = "node")]
    selector: Vec<(String, String)>,
    /// With --selector: run on every matching agent, one job each (a fan-out).
    #[arg(long, requires = "selector")]
    all: bool,
    /// Idempotency key: submitting twice with the same key runs the job once.
    #[arg(long, env = "FLUX_IDEMPOTENCY_KEY")]
    idempotency_key: Option<String>,
    /// Join all arguments into one shell command line.
    #[arg(long)]
    shell: bool,
    /// Wait for the job, stream its output and exit with its exit code.
    #[arg(long, short = 'w')]
    wait: bool,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum AgentsCmd {
    /// List agents of the tenant.
    List,
    /// Show one agent.
    Get { id: String },
}

#[derive(Subcommand, Debug)]
enum TokenCmd {
    /// Issue a token.
    Create {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_parser = ["admin", "operator", "viewer", "agent"])]
        role: String,
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Node id bound into an agent token.
        #[arg(long)]
        node_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
    },
    /// Revoke a token, given the token or its id (jti).
    Revoke {
        #[arg(long, conflicts_with = "token_value")]
        jti: Option<String>,
        #[arg(value_name = "TOKEN")]
        token_value: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
enum ConfigCmd {
    /// Create or update a context.
    SetContext {
        name: String,
        #[arg(long = "to-server", value_name = "URL")]
        url: String,
        #[arg(long = "with-token-file", value_name = "FILE")]
        with_token_file: Option<PathBuf>,
        #[arg(long = "with-ca", value_name = "FILE")]
        with_ca: Option<PathBuf>,
        #[arg(long = "allow-insecure")]
        allow_insecure: bool,
    },
    /// Make a context the default.
    UseContext { name: String },
    /// List contexts.
    GetContexts,
}

fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} must be KEY=VALUE"))
}

struct Ctx {
    cli: Cli,
}

impl Ctx {
    fn config_path(&self) -> PathBuf {
        self.cli.config.clone().unwrap_or_else(config::default_path)
    }

    fn client(&self) -> Result<ApiClient> {
        let cfg = config::Config::load(&self.config_path())?;
        let ctx = cfg
            .context(self.cli.context.as_deref())?
            .map(|(_, c)| c.clone());
        let server = self
            .cli
            .server
            .clone()
            .or_else(|| ctx.as_ref().map(|c| c.server.clone()))
            .unwrap_or_else(|| "https://localhost:8443".to_string());
        let token_file = self
            .cli
            .token_file
            .clone()
            .or_else(|| ctx.as_ref().and_then(|c| c.token_file.clone()));
        let token = match (&self.cli.token, token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(&f)
                    .with_context(|| format!("reading token file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls = TlsOptions {
            ca_file: self
                .cli
                .ca
                .clone()
                .or_else(|| ctx.as_ref().and_then(|c| c.ca.clone())),
            insecure: self.cli.insecure || ctx.as_ref().is_some_and(|c| c.insecure),
        };
        Ok(ApiClient::new(
            server.split(',').map(str::to_string).collect(),
            token,
            &tls,
        )?)
    }

    fn json(&self) -> bool {
        self.cli.output == Output::Json
    }
}

fn print_json(v: &impl serde::Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_FULL_CONDENSED);
    t.set_header(header.to_vec());
    t
}

fn age(ms: u64) -> String {
    let s = now_ms().saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    }
}

fn job_table(jobs: &[Job]) -> Table {
    let mut t = table(&[
        "JOB", "STATUS", "AGENT", "EXIT", "ATTEMPTS", "AGE", "COMMAND",
    ]);
    for j in jobs {
        t.add_row(vec![
            j.job_id.clone(),
            j.status.as_str().to_string(),
            j.agent
                .clone()
                .or(j.node_id.clone())
                .unwrap_or_else(|| "-".into()),
            j.exit_code
                .map(|c| c.to_string())
                .or(j.signal.map(|s| format!("sig {s}")))
                .unwrap_or_else(|| "-".into()),
            format!("{}/{}", j.attempts, j.max_attempts),
            age(j.created_at),
            short(&j.command.display(), 48),
        ]);
    }
    t
}

/// The exit code `job run --wait` returns for a finished job.
fn job_exit_code(job: &Job) -> u8 {
    match job.status {
        JobStatus::Succeeded => 0,
        JobStatus::TimedOut => 124,
        JobStatus::Cancelled => 130,
        JobStatus::Failed => match (job.exit_code, job.signal) {
            (Some(c), _) => (c & 0xff) as u8,
            (None, Some(s)) => (128 + (s & 0x7f)) as u8,
            (None, None) if job.error.as_deref().is_some_and(|e| e.contains("start")) => 127,
            _ => 1,
        },
        _ => 1,
    }
}

async fn wait_for(api: &ApiClient, id: &str, limit: Option<Duration>) -> Result<Job> {
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        let job: Job = api
            .call(
                Method::GET,
                &format!("/v1/jobs/{id}/wait?timeout_secs=30"),
                None,
                Duration::from_secs(60),
            )
            .await?;
        if job.status.is_terminal() {
            return Ok(job);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            bail!(
                "job {id} still {} after the wait timeout",
                job.status.as_str()
            );
        }
    }
}

/// Streams a job's output to stdout/stderr until it ends (follow) or what is stored (no follow).
async fn stream_logs(api: &ApiClient, id: &str, follow: bool) -> Result<()> {
    let path = format!("/v1/jobs/{id}/logs?format=jsonl&follow={follow}");
    let mut reconnects = 0u32;
    let mut printed: BTreeMap<u32, u64> = BTreeMap::new();
    loop {
        let resp = api
            .send(Method::GET, &path, None, Duration::from_secs(24 * 3600))
            .await?;
        let mut body = resp.bytes_stream();
        let mut buf = Vec::new();
        let mut attempt = 0u32;
        let mut broken = false;
        while let Some(piece) = body.next().await {
            let piece = match piece {
                Ok(p) => p,
                Err(_) => {
                    broken = true;
                    break;
                }
            };
            buf.extend_from_slice(&piece);
            while let Some(nl) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=nl).collect();
                let Ok(v) = serde_json::from_slice::<Value>(&line) else {
                    continue;
                };
                if let Some(note) = v.get("note").and_then(Value::as_str) {
                    if note.contains("attempt") {
                        attempt += 1;
                    }
                    eprintln!("{note}");
                    continue;
                }
                let Ok(chunk) = serde_json::from_value::<StoredChunk>(v) else {
                    continue;
                };
                // After a reconnect the server replays from the start: skip what was printed.
                let seen = printed.entry(attempt).or_insert(0);
                if chunk.seq < *seen {
                    continue;
                }
                *seen = chunk.seq + 1;
                match chunk.stream {
                    flux_core::model::Stream::Stdout => {
                        let mut o = std::io::stdout().lock();
                        o.write_all(chunk.data.as_bytes())?;
                        o.flush()?;
                    }
                    flux_core::model::Stream::Stderr => {
                        let mut e = std::io::stderr().lock();
                        e.write_all(chunk.data.as_bytes())?;
                        e.flush()?;
                    }
                }
            }
        }
        if !broken || !follow || reconnects >= 20 {
            return Ok(());
        }
        reconnects += 1;
        tokio::time::sleep(flux_core::client::backoff(
            reconnects,
            Duration::from_millis(200),
            Duration::from_secs(5),
        ))
        .await;
    }
}

async fn job_cmd(ctx: &Ctx, cmd: &JobCmd) -> Result<ExitCode> {
    let api = ctx.client()?;
    match cmd {
        JobCmd::Run(r) => {
            let (command, argv) = if r.shell || r.command.len() == 1 {
                (Some(r.command.join(" ")), None)
            } else {
                (None, Some(r.command.clone()))
            };
            let req = SubmitJob {
                command,
                argv,
                node_id: r.node.clone(),
                env: r.env.iter().cloned().collect(),
                secret_env: r
                    .secret_env
                    .iter()
                    .map(|n| {
                        std::env::var(n)
                            .map(|v| (n.clone(), v))
                            .with_context(|| format!("--secret-env {n}: ${n} is not set"))
                    })
                    .collect::<Result<_>>()?,
                workdir: r.workdir.clone(),
                timeout_secs: r.timeout.map(|d| d.as_secs().max(1)),
                max_attempts: r.attempts,
                priority: r.priority,
                selector: r.selector.iter().cloned().collect(),
                fan_out: r.all,
                idempotency_key: r.idempotency_key.clone(),
            };
            if r.all {
                return fan_out(ctx, &api, &req, r.wait).await;
            }
            let job: Job = api.post("/v1/jobs", &req).await?;
            if !r.wait {
                if ctx.json() {
                    print_json(&job)?;
                } else {
                    println!("{}", job.job_id);
                }
                return Ok(ExitCode::SUCCESS);
            }
            if !ctx.json() {
                eprintln!("job {} submitted", job.job_id);
                stream_logs(&api, &job.job_id, true).await?;
            }
            let done = wait_for(&api, &job.job_id, None).await?;
            if ctx.json() {
                // One document for scripts: the final job and its stored output (both streams).
                let output = api
                    .send(
                        Method::GET,
                        &format!("/v1/jobs/{}/logs", done.job_id),
                        None,
                        Duration::from_secs(60),
                    )
                    .await?
                    .text()
                    .await
                    .context("reading job output")?;
                print_json(&json!({"job": done, "output": output}))?;
            } else if done.status != JobStatus::Succeeded {
                eprintln!(
                    "job {} {}{}",
                    done.job_id,
                    done.status.as_str(),
                    done.error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::from(job_exit_code(&done)))
        }
        JobCmd::Get { id } => {
            let job: Job = api.get(&format!("/v1/jobs/{id}")).await?;
            if ctx.json() {
                print_json(&job)?;
            } else {
                println!("{}", job_table(std::slice::from_ref(&job)));
                if let Some(e) = &job.error {
                    println!("error: {e}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCmd::List {
            status,
            node,
            limit,
        } => {
            let mut q = format!("/v1/jobs?limit={limit}");
            if let Some(s) = status {
                q.push_str(&format!("&status={s}"));
            }
            if let Some(n) = node {
                q.push_str(&format!("&node_id={n}"));
            }
            let jobs: Vec<Job> = api.get(&q).await?;
            if ctx.json() {
                print_json(&jobs)?;
            } else {
                println!("{}", job_table(&jobs));
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCmd::Logs { id, follow } => {
            stream_logs(&api, id, *follow).await?;
            Ok(ExitCode::SUCCESS)
        }
        JobCmd::Cancel { id } => {
            let job: Job = api
                .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
                .await?;
            if ctx.json() {
                print_json(&job)?;
            } else if job.status.is_terminal() {
                println!("job {} {}", job.job_id, job.status.as_str());
            } else {
                println!("job {} cancelling (its agent is stopping it)", job.job_id);
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCmd::Wait { id, timeout } => {
            let job = wait_for(&api, id, *timeout).await?;
            if ctx.json() {
                print_json(&job)?;
            } else {
                println!("job {} {}", job.job_id, job.status.as_str());
            }
            Ok(ExitCode::from(job_exit_code(&job)))
        }
        JobCmd::Attempts { id } => {
            let attempts: Vec<Attempt> = api.get(&format!("/v1/jobs/{id}/attempts")).await?;
            if ctx.json() {
                print_json(&attempts)?;
            } else {
                let mut t = table(&["ATTEMPT", "AGENT", "STATE", "RESULT", "OUTPUT", "NOTE"]);
                for a in &attempts {
                    t.add_row(vec![
                        a.attempt_id.clone(),
                        a.agent.clone(),
                        format!("{:?}", a.state).to_lowercase(),
                        a.result
                            .as_ref()
                            .map(|r| {
                                format!(
                                    "{:?} {}",
                                    r.outcome,
                                    r.exit_code.map(|c| c.to_string()).unwrap_or_default()
                                )
                            })
                            .unwrap_or_else(|| "-".into()),
                        format!(
                            "{} B{}",
                            a.output_bytes,
                            if a.output_dropped > 0 {
                                format!(" (+{} dropped)", a.output_dropped)
                            } else {
                                String::new()
                            }
                        ),
                        a.abandoned_reason.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let ctx = Ctx { cli };
    match &ctx.cli.cmd {
        Cmd::Job(cmd) => job_cmd(&ctx, cmd).await,
        Cmd::Apply(a) => apply_cmd(&ctx, a).await,
        Cmd::Backup(cmd) => backup_cmd(&ctx, cmd).await,
        Cmd::Audit(cmd) => audit_cmd(&ctx, cmd).await,
        Cmd::Tenants(cmd) => tenants_cmd(&ctx, cmd).await,
        Cmd::Chaos(cmd) => chaos_cmd(&ctx, cmd).await,
        Cmd::Diff(d) => {
            let api = ctx.client()?;
            let (file, text) = states::read_file(&d.file)?;
            let plan = states::plan(&api, &file, &text, d.prune).await?;
            if ctx.json() {
                print_json(&plan)?;
            } else {
                print!("{}", states::render_plan(&plan, false));
            }
            Ok(if plan.has_changes() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Get(GetCmd::States { name }) => {
            if let Some(n) = name {
                check_state_name(n)?;
            }
            let api = ctx.client()?;
            match name {
                Some(n) => {
                    let v: flux_core::reconcile::StateView =
                        api.get(&format!("/v1/states/{n}")).await?;
                    if ctx.json() {
                        print_json(&v)?;
                    } else {
                        print!("{}", states::state_detail(&v));
                    }
                }
                None => {
                    let v: Vec<flux_core::reconcile::StateView> = api.get("/v1/states").await?;
                    if ctx.json() {
                        print_json(&v)?;
                    } else {
                        println!("{}", states::states_table(&v));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Delete(DeleteCmd::State { name, if_version }) => {
            check_state_name(name)?;
            let api = ctx.client()?;
            let headers: Vec<(&str, String)> = if_version
                .map(|v| ("if-match", v.to_string()))
                .into_iter()
                .collect();
            let resp = api
                .send_with_headers(
                    Method::DELETE,
                    &format!("/v1/states/{name}"),
                    None,
                    Duration::from_secs(30),
                    &headers,
                )
                .await?;
            let reply: Value = resp.json().await.context("decoding the reply")?;
            if ctx.json() {
                print_json(&reply)?;
            } else {
                println!("deleted state {name} (version {})", reply["version"]);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Agents(cmd) => {
            let api = ctx.client()?;
            let agents: Vec<Agent> = match cmd {
                AgentsCmd::List => api.get("/v1/agents").await?,
                AgentsCmd::Get { id } => vec![api.get(&format!("/v1/agents/{id}")).await?],
            };
            if ctx.json() {
                match cmd {
                    AgentsCmd::Get { .. } => print_json(&agents[0])?,
                    AgentsCmd::List => print_json(&agents)?,
                }
            } else {
                let mut t = table(&["AGENT", "STATE", "SLOTS", "LABELS", "LAST SEEN", "VERSION"]);
                for a in &agents {
                    t.add_row(vec![
                        a.node_id.clone(),
                        a.state.as_str().to_string(),
                        a.slots.to_string(),
                        a.labels
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(","),
                        format!("{} ago", age(a.last_seen)),
                        a.version.clone().unwrap_or_default(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(TokenCmd::Create {
            tenant,
            role,
            ttl,
            node_id,
            subject,
        }) => {
            let api = ctx.client()?;
            let reply: Value = api
                .post(
                    "/v1/tokens",
                    &json!({"tenant": tenant, "role": role, "ttl_secs": ttl.as_secs(), "node_id": node_id, "subject": subject}),
                )
                .await?;
            if ctx.json() {
                print_json(&reply)?;
            } else {
                println!("{}", reply["token"].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Token(TokenCmd::Revoke { jti, token_value }) => {
            let api = ctx.client()?;
            let body = match (jti, token_value) {
                (Some(j), None) => json!({"jti": j}),
                (None, Some(t)) => json!({"token": t}),
                _ => bail!("give the token or --jti"),
            };
            let reply: Value = api.post("/v1/tokens/revoke", &body).await?;
            if ctx.json() {
                print_json(&reply)?;
            } else {
                println!("revoked {}", reply["revoked"].as_str().unwrap_or_default());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status => {
            let api = ctx.client()?;
            let s: Value = api.get("/v1/status").await?;
            if ctx.json() {
                print_json(&s)?;
            } else {
                let agents = s["agents"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .filter(|a| !a.is_empty())
                    .unwrap_or_else(|| "none".into());
                println!(
                    "leader: {} (epoch {})   store: {} (epoch {})   agents: {}   queued: {}",
                    s["leader_node"].as_str().unwrap_or("none"),
                    s["leader_epoch"],
                    s["store"].as_str().unwrap_or("?"),
                    s["store_epoch"],
                    agents,
                    s["queue_depth"]
                );
                let mut t = table(&["NODE", "LEADER", "EPOCH", "LAST SEEN", "VERSION"]);
                for n in s["nodes"].as_array().into_iter().flatten() {
                    let id = n["node_id"].as_str().unwrap_or("?");
                    t.add_row(vec![
                        if id == s["node_id"].as_str().unwrap_or("") {
                            format!("{id} (answered)")
                        } else {
                            id.to_string()
                        },
                        if n["leader"].as_bool().unwrap_or(false) {
                            "yes".into()
                        } else {
                            "no".into()
                        },
                        n["epoch"].to_string(),
                        format!("{} ago", age(n["last_seen"].as_u64().unwrap_or(0))),
                        n["version"].as_str().unwrap_or("?").to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Whoami => {
            let api = ctx.client()?;
            let c: Value = api.get("/v1/whoami").await?;
            if ctx.json() {
                print_json(&c)?;
            } else {
                println!(
                    "{} (tenant {}, role {})",
                    c["sub"].as_str().unwrap_or("?"),
                    c["tenant"].as_str().unwrap_or("?"),
                    c["role"].as_str().unwrap_or("?")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config(cmd) => {
            let path = ctx.config_path();
            let mut cfg = config::Config::load(&path)?;
            match cmd {
                ConfigCmd::SetContext {
                    name,
                    url,
                    with_token_file,
                    with_ca,
                    allow_insecure,
                } => {
                    cfg.contexts.insert(
                        name.clone(),
                        config::Context {
                            server: url.clone(),
                            token_file: with_token_file.clone(),
                            ca: with_ca.clone(),
                            insecure: *allow_insecure,
                        },
                    );
                    if cfg.current_context.is_none() {
                        cfg.current_context = Some(name.clone());
                    }
                    cfg.save(&path)?;
                    println!("context {name} saved in {}", path.display());
                }
                ConfigCmd::UseContext { name } => {
                    if !cfg.contexts.contains_key(name) {
                        bail!("no context named {name:?}");
                    }
                    cfg.current_context = Some(name.clone());
                    cfg.save(&path)?;
                    println!("using context {name}");
                }
                ConfigCmd::GetContexts => {
                    if ctx.json() {
                        print_json(&cfg)?;
                    } else {
                        let mut t = table(&["CURRENT", "NAME", "SERVER", "TOKEN FILE", "CA"]);
                        for (n, c) in &cfg.contexts {
                            t.add_row(vec![
                                if cfg.current_context.as_deref() == Some(n) {
                                    "*".into()
                                } else {
                                    String::new()
                                },
                                n.clone(),
                                c.server.clone(),
                                c.token_file
                                    .as_ref()
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_default(),
                                c.ca.as_ref()
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_default(),
                            ]);
                        }
                        println!("{t}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Bench(BenchCmd::Jobs {
            count,
            concurrency,
            command,
            node,
            deadline,
        }) => {
            let api = std::sync::Arc::new(ctx.client()?);
            let progress = !ctx.json() && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let r = bench::jobs(
                api,
                *count,
                *concurrency,
                command.clone(),
                node.clone(),
                *deadline,
                progress,
            )
            .await?;
            bench_report(
                &ctx,
                &r,
                &[
                    "JOBS",
                    "CONCURRENCY",
                    "FAILED",
                    "SECONDS",
                    "JOBS/S",
                    "P50 MS",
                    "P90 MS",
                    "P99 MS",
                    "MAX MS",
                    "SUBMIT P50/P99",
                    "DISPATCH P50/P99",
                ],
                vec![
                    r.jobs.to_string(),
                    r.concurrency.to_string(),
                    r.failed.to_string(),
                    format!("{:.2}", r.elapsed_secs),
                    format!("{:.1}", r.jobs_per_sec),
                    format!("{:.1}", r.round_trip.p50_ms),
                    format!("{:.1}", r.round_trip.p90_ms),
                    format!("{:.1}", r.round_trip.p99_ms),
                    format!("{:.1}", r.round_trip.max_ms),
                    format!("{:.1}/{:.1}", r.submit.p50_ms, r.submit.p99_ms),
                    format!("{:.0}/{:.0}", r.dispatch.p50_ms, r.dispatch.p99_ms),
                ],
                r.failed,
            )
        }
        Cmd::Bench(BenchCmd::Submit {
            count,
            concurrency,
            command,
            deadline,
        }) => {
            let api = std::sync::Arc::new(ctx.client()?);
            let r = bench::submit(api, *count, *concurrency, command.clone(), *deadline).await?;
            bench_report(
                &ctx,
                &r,
                &[
                    "JOBS",
                    "CONCURRENCY",
                    "REFUSED",
                    "SECONDS",
                    "SUBMITS/S",
                    "P50 MS",
                    "P99 MS",
                    "MAX MS",
                ],
                vec![
                    r.jobs.to_string(),
                    r.concurrency.to_string(),
                    r.refused.to_string(),
                    format!("{:.2}", r.elapsed_secs),
                    format!("{:.1}", r.submits_per_sec),
                    format!("{:.1}", r.latency.p50_ms),
                    format!("{:.1}", r.latency.p99_ms),
                    format!("{:.1}", r.latency.max_ms),
                ],
                r.refused,
            )
        }
        Cmd::Bench(BenchCmd::Converge {
            labels,
            dir,
            timeout,
        }) => {
            let api = ctx.client()?;
            let progress = !ctx.json() && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let r = bench::converge(
                &api,
                labels.iter().cloned().collect(),
                dir,
                *timeout,
                progress,
            )
            .await?;
            bench_report(
                &ctx,
                &r,
                &[
                    "TARGETS",
                    "COMPLIANT",
                    "FAILED",
                    "SECONDS",
                    "P50 MS",
                    "P90 MS",
                    "P99 MS",
                    "MAX MS",
                ],
                vec![
                    r.targets.to_string(),
                    r.compliant.to_string(),
                    r.failed.to_string(),
                    format!("{:.2}", r.elapsed_secs),
                    format!("{:.0}", r.to_compliant.p50_ms),
                    format!("{:.0}", r.to_compliant.p90_ms),
                    format!("{:.0}", r.to_compliant.p99_ms),
                    format!("{:.0}", r.to_compliant.max_ms),
                ],
                r.failed,
            )
        }
        Cmd::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "fluxctl",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn limit(v: &Value) -> String {
    if v.is_null() {
        "-".into()
    } else {
        v.to_string()
    }
}

async fn tenants_cmd(ctx: &Ctx, cmd: &TenantsCmd) -> Result<ExitCode> {
    let api = ctx.client()?;
    match cmd {
        TenantsCmd::List => {
            let list: Vec<Value> = api.get("/v1/tenants").await?;
            if ctx.json() {
                print_json(&list)?;
            } else {
                let mut t = table(&[
                    "TENANT",
                    "QUEUED",
                    "RUNNING",
                    "AGENTS ONLINE",
                    "STATES",
                    "MAX QUEUED",
                    "MAX RUNNING",
                    "SUBMIT/S",
                ]);
                for u in &list {
                    t.add_row(vec![
                        u["tenant"].as_str().unwrap_or("?").to_string(),
                        u["queued"].to_string(),
                        u["running"].to_string(),
                        format!("{}/{}", u["agents_online"], u["agents"]),
                        u["states"].to_string(),
                        limit(&u["quota"]["max_queued"]),
                        limit(&u["quota"]["max_running"]),
                        limit(&u["quota"]["submit_per_sec"]),
                    ]);
                }
                println!("{t}");
            }
        }
        TenantsCmd::Create {
            name,
            max_queued,
            max_running,
            submit_rate,
            token_ttl,
        } => {
            let quota = (max_queued.is_some() || max_running.is_some() || submit_rate.is_some())
                .then_some(flux_core::quota::Quota {
                    max_queued: *max_queued,
                    max_running: *max_running,
                    submit_per_sec: *submit_rate,
                    submit_burst: None,
                });
            let reply: Value = api
                .post(
                    "/v1/tenants",
                    &json!({"name": name, "quota": quota, "admin_token_ttl_secs": token_ttl.as_secs()}),
                )
                .await?;
            if ctx.json() {
                print_json(&reply)?;
            } else {
                println!("{}", reply["admin_token"].as_str().unwrap_or_default());
            }
        }
        TenantsCmd::Quota(QuotaCmd::Get { tenant }) => {
            let q: Value = api.get(&format!("/v1/tenants/{tenant}/quota")).await?;
            print_json(&q)?;
        }
        TenantsCmd::Quota(QuotaCmd::Set {
            tenant,
            max_queued,
            max_running,
            submit_rate,
            submit_burst,
            if_version,
        }) => {
            let body = flux_core::quota::Quota {
                max_queued: *max_queued,
                max_running: *max_running,
                submit_per_sec: *submit_rate,
                submit_burst: *submit_burst,
            };
            let headers: Vec<(&str, String)> = if_version
                .map(|v| ("if-match", v.to_string()))
                .into_iter()
                .collect();
            let reply: Value = api
                .send_with_headers(
                    Method::PUT,
                    &format!("/v1/tenants/{tenant}/quota"),
                    Some(&flux_core::client::erased::Body(&body)),
                    Duration::from_secs(30),
                    &headers,
                )
                .await?
                .json()
                .await
                .context("decoding the reply")?;
            if ctx.json() {
                print_json(&reply)?;
            } else {
                println!("quota of {tenant} set (version {})", reply["version"]);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn audit_cmd(ctx: &Ctx, cmd: &AuditCmd) -> Result<ExitCode> {
    use flux_core::audit::{Record, Verification};
    let api = ctx.client()?;
    let tenant_q = |t: &Option<String>| {
        t.as_ref()
            .map(|t| format!("&tenant={t}"))
            .unwrap_or_default()
    };
    match cmd {
        AuditCmd::Log {
            after,
            limit,
            tenant,
        } => {
            let recs: Vec<Record> = api
                .get(&format!(
                    "/v1/audit?after={after}&limit={limit}{}",
                    tenant_q(tenant)
                ))
                .await?;
            if ctx.json() {
                print_json(&recs)?;
            } else {
                let mut t = table(&["SEQ", "AGE", "ACTOR", "ACTION", "OBJECT", "STATUS", "HASH"]);
                for r in &recs {
                    t.add_row(vec![
                        r.seq.to_string(),
                        age(r.event.at),
                        r.event.actor.clone(),
                        r.event.action.clone(),
                        short(&r.event.object, 48),
                        r.event.status.to_string(),
                        r.hash.chars().take(12).collect(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Verify { tenant, all } => {
            let path = if *all {
                "/v1/audit/verify?all=true".to_string()
            } else {
                format!(
                    "/v1/audit/verify?{}",
                    tenant_q(tenant).trim_start_matches('&')
                )
            };
            let results: Vec<Verification> = api.get(&path).await?;
            if ctx.json() {
                print_json(&results)?;
            } else {
                for v in &results {
                    match &v.problem {
                        None => println!("{}: ok, {} records", v.tenant, v.records),
                        Some(p) => {
                            println!("{}: BROKEN after {} good records: {p}", v.tenant, v.records)
                        }
                    }
                }
            }
            Ok(if results.iter().all(|v| v.ok) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn backup_summary(b: &flux_core::backup::Backup) -> Value {
    json!({
        "format_version": b.header.format_version,
        "created_at": b.header.created_at,
        "source_backend": b.header.source_backend,
        "epoch": b.header.epoch,
        "objects": b.entries.len(),
        "tenants": b.tenants(),
        "sha256": b.sha256,
    })
}

/// `job run --selector ... --all`: one job per matching agent; with --wait, a table of their
/// results and exit 0 only if every one succeeded.
async fn fan_out(ctx: &Ctx, api: &ApiClient, req: &SubmitJob, wait: bool) -> Result<ExitCode> {
    let reply: Value = api.post("/v1/jobs", req).await?;
    let jobs: Vec<Job> = serde_json::from_value(reply["jobs"].clone())?;
    if !wait {
        if ctx.json() {
            print_json(&reply)?;
        } else {
            for j in &jobs {
                println!("{} {}", j.job_id, j.node_id.as_deref().unwrap_or("-"));
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut done = Vec::with_capacity(jobs.len());
    for j in &jobs {
        done.push(wait_for(api, &j.job_id, None).await?);
    }
    if ctx.json() {
        print_json(&json!({"group": reply["group"], "jobs": done}))?;
    } else {
        println!("{}", job_table(&done));
    }
    Ok(if done.iter().all(|j| j.status == JobStatus::Succeeded) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads and checks a backup file.
fn read_backup(file: &std::path::Path) -> Result<(Vec<u8>, flux_core::backup::Backup)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let b = flux_core::backup::decode(&bytes)
        .with_context(|| format!("{} is not valid", file.display()))?;
    Ok((bytes, b))
}

async fn backup_cmd(ctx: &Ctx, cmd: &BackupCmd) -> Result<ExitCode> {
    use flux_core::backup;
    match cmd {
        BackupCmd::Create { file } => {
            let api = ctx.client()?;
            let bytes = api
                .send(Method::GET, "/v1/backup", None, Duration::from_secs(3600))
                .await?
                .bytes()
                .await
                .context("reading the backup")?;
            // Never write a file that would not restore.
            let b = backup::decode(&bytes).context("the server sent an invalid backup")?;
            if file == std::path::Path::new("-") {
                std::io::stdout().lock().write_all(&bytes)?;
            } else {
                // Every tenant's data is in it: owner-only, like the keys it sits beside.
                flux_core::files::replace_private(file, &file.with_extension("partial"), &bytes)
                    .with_context(|| format!("writing {}", file.display()))?;
                if ctx.json() {
                    print_json(&backup_summary(&b))?;
                } else {
                    eprintln!(
                        "backup of {} objects in {} tenants (epoch {}) written to {}; sha256 {}",
                        b.entries.len(),
                        b.tenants().len(),
                        b.header.epoch,
                        file.display(),
                        b.sha256
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCmd::Verify { file } => {
            let (_, b) = read_backup(file)?;
            if ctx.json() {
                print_json(&backup_summary(&b))?;
            } else {
                println!(
                    "ok: {} objects in {} tenants, taken from {} at epoch {}, sha256 {}",
                    b.entries.len(),
                    b.tenants().len(),
                    b.header.source_backend,
                    b.header.epoch,
                    b.sha256
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        BackupCmd::Restore { file, force } => {
            let (bytes, _) = read_backup(file)?;
            let api = ctx.client()?;
            let report: Value = api
                .call(
                    Method::POST,
                    &format!("/v1/backup/restore?force={force}"),
                    Some(&flux_core::client::erased::Raw(bytes)),
                    Duration::from_secs(3600),
                )
                .await?;
            if ctx.json() {
                print_json(&report)?;
            } else {
                println!(
                    "restored {} objects in {} tenants; fencing epoch now {} (backup taken at {})",
                    report["objects"], report["tenants"], report["epoch"], report["backup_epoch"]
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Prints a benchmark's result (JSON, or a one-row table) and exits 1 if anything failed.
fn bench_report(
    ctx: &Ctx,
    r: &impl serde::Serialize,
    header: &[&str],
    row: Vec<String>,
    failed: usize,
) -> Result<ExitCode> {
    if ctx.json() {
        print_json(r)?;
    } else {
        let mut t = table(header);
        t.add_row(row);
        println!("{t}");
    }
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// State names become URL path segments: refuse anything that is not a valid name.
fn check_state_name(name: &str) -> Result<()> {
    if !flux_core::model::valid_ident(name) {
        bail!(
            "{name:?} is not a state name (1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-')"
        );
    }
    Ok(())
}

/// `fluxctl apply`: plan, apply against the planned versions, optionally wait.
async fn apply_cmd(ctx: &Ctx, a: &ApplyArgs) -> Result<ExitCode> {
    let api = ctx.client()?;
    let (file, text) = states::read_file(&a.file)?;
    let planned = states::plan(&api, &file, &text, a.prune).await?;
    if a.dry_run {
        if ctx.json() {
            print_json(&planned)?;
        } else {
            print!("{}", states::render_plan(&planned, true));
            println!("(dry run: nothing changed)");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let applied = if planned.has_changes() {
        states::apply(&api, &file, &text, a.prune, &planned).await?
    } else {
        planned
    };
    if !ctx.json() {
        print!("{}", states::render_plan(&applied, true));
        if !applied.has_changes() {
            println!("no changes");
        }
    }
    let want: BTreeMap<String, u64> = applied
        .items
        .iter()
        .filter(|i| i.action != flux_core::reconcile::Action::Delete)
        .map(|i| (i.name.clone(), i.to_version.unwrap_or(i.from_version)))
        .collect();
    let converged = if a.wait {
        Some(states::wait(&api, &want, a.timeout, ctx.json()).await?)
    } else {
        None
    };
    if ctx.json() {
        print_json(&json!({"plan": applied, "convergence": converged}))?;
    }
    let Some(c) = converged else {
        return Ok(ExitCode::SUCCESS);
    };
    if !ctx.json() {
        for e in &c.empty {
            eprintln!("warning: state {e} selects no agent");
        }
        println!(
            "{} of {} targets compliant, {} failed",
            c.compliant, c.targets, c.failed
        );
        for f in &c.failures {
            eprintln!("failed: {f}");
        }
    }
    Ok(if c.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn chaos_cmd(ctx: &Ctx, cmd: &ChaosCmd) -> Result<ExitCode> {
    match cmd {
        ChaosCmd::Plan(p) => {
            let seed = p.seed();
            let scenarios = p.scenarios()?;
            let faults =
                flux_core::chaos::schedule(seed, &scenarios, p.duration.as_millis() as u64);
            if ctx.json() {
                print_json(&json!({"seed": seed, "faults": faults}))?;
            } else {
                println!("seed {seed}");
                let mut t = table(&["AT MS", "FAULT", "TARGET", "HOLD MS"]);
                for f in &faults {
                    t.add_row(vec![
                        f.at_ms.to_string(),
                        f.scenario.to_string(),
                        f.target.to_string(),
                        f.hold_ms.to_string(),
                    ]);
                }
                println!("{t}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ChaosCmd::Run(a) => {
            let bin_dir = match &a.bin_dir {
                Some(d) => d.clone(),
                None => std::env::current_exe()?
                    .parent()
                    .context("fluxctl's directory")?
                    .to_path_buf(),
            };
            let redis_server = match &a.redis_server {
                Some(p) => p.clone(),
                None => find_on_path("redis-server").context(
                    "redis-server not found on PATH: install it (apt-get install redis-server) or give --redis-server",
                )?,
            };
            let opts = chaos::Opts {
                scenarios: a.plan.scenarios()?,
                duration: a.plan.duration,
                seed: a.plan.seed(),
                nodes: a.nodes,
                agents: a.agents,
                bin_dir,
                redis_server,
                work_dir: a.work_dir.clone(),
                keep: a.keep,
                heal_timeout: a.heal_timeout,
                rate: a.rate,
                unsafety: match (a.unsafe_no_fencing, a.unsafe_ignore_lease) {
                    (true, _) => chaos::Unsafety::NoFencing,
                    (false, true) => chaos::Unsafety::IgnoreLease,
                    (false, false) => chaos::Unsafety::None,
                },
            };
            let report = tokio::select! {
                r = chaos::run(opts, !ctx.json()) => r?,
                _ = terminated() => anyhow::bail!("interrupted; the cluster was stopped"),
            };
            if ctx.json() {
                print_json(&report)?;
            } else {
                print_chaos_report(&report);
            }
            Ok(if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        }
        _ => std::future::pending().await,
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

fn print_chaos_report(r: &chaos::Report) {
    println!(
        "seed {}  scenarios {}  {} nodes, {} agents, {:.0} s{}",
        r.seed,
        r.scenarios
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        r.nodes,
        r.agents,
        r.duration_secs,
        match r.unsafety {
            chaos::Unsafety::None => "",
            chaos::Unsafety::IgnoreLease => "  (LEASE IGNORED: fencing alone protects)",
            chaos::Unsafety::NoFencing => "  (LEASE IGNORED, FENCING DISABLED)",
        }
    );
    let mut t = table(&["AT MS", "FAULT", "HIT", "HOLD MS", "FAILOVER MS"]);
    for f in &r.faults {
        t.add_row(vec![
            f.started_ms.to_string(),
            f.planned.scenario.to_string(),
            f.hit.clone(),
            f.planned.hold_ms.to_string(),
            f.failover_ms.map(|m| m.to_string()).unwrap_or_else(|| {
                if f.planned.scenario.hits_leader() {
                    "none".into()
                } else {
                    "-".into()
                }
            }),
        ]);
    }
    println!("{t}");
    let w = &r.workload;
    println!(
        "jobs: {} submitted, {} acknowledged, {} succeeded, {} executions, {} unanswered; {} state targets",
        w.submitted, w.acknowledged, w.succeeded, w.executions, w.unacknowledged, w.state_targets
    );
    println!(
        "history: {} leader writes in {} epochs, {} refused as fenced, {} results; failover p50 {} ms, max {} ms",
        r.history.leader_writes,
        r.history.epochs,
        r.history.fenced,
        r.history.results,
        r.failover.p50_ms,
        r.failover.max_ms
    );
    let mut t = table(&["INVARIANT", "RESULT", "VIOLATIONS"]);
    for i in &r.invariants {
        t.add_row(vec![
            i.invariant.to_string(),
            if i.held { "held" } else { "VIOLATED" }.to_string(),
            i.violations.to_string(),
        ]);
    }
    println!("{t}");
    for v in &r.violations {
        println!("violation: {}: {}", v.invariant, v.detail);
    }
    if let Some(d) = &r.work_dir {
        println!("logs and histories kept in {}", d.display());
    }
    println!("{}", if r.passed { "PASSED" } else { "FAILED" });
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.output == Output::Json;
    // diff reserves 1 for "changes found"; its errors are 2, like `diff` and `kubectl diff`;
    // chaos run reserves 1 for "an invariant was violated".
    let error_code = if matches!(cli.cmd, Cmd::Diff(_) | Cmd::Chaos(_)) {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    };
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            let (code, message) = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Api {
                    status,
                    code,
                    message,
                    ..
                }) => (code.clone(), format!("{status}: {message}")),
                Some(other) => ("client".to_string(), other.to_string()),
                None => ("error".to_string(), format!("{e:#}")),
            };
            if json {
                let _ = print_json(&json!({"error": {"code": code, "message": message}}));
            }
            eprintln!("fluxctl: {message}");
            error_code
        }
    }
}
