//! `fluxctl job run|get|list|logs|cancel|wait|attempts`: submit jobs (one, or one per matching
//! agent with `--all`), follow their output and exit with the remote command's exit code
//! (`job_exit_code`), and inspect them.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Subcommand;
use flux_core::client::ApiClient;
use flux_core::model::{Attempt, Job, JobStatus, StoredChunk, SubmitJob, parse_duration};
use flux_core::replies::{FanOutReply, LogNote};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::cli::parse_kv;
use crate::context::Ctx;
use crate::error::{CliResult, exit_with, ok_or_1};
use crate::output::{
    Output, Render, SortedKeys, age, emit, print_json, short, status_line, table, view,
};

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Submit a job. One argument is a shell command line; several are an argv.
    Run(Box<RunArgs>),
    /// Show one job.
    Get { id: String },
    /// List jobs, newest first: one page, or every page with --all.
    List {
        /// Only jobs in this status (queued, assigned, running, succeeded, failed, cancelled,
        /// timed_out).
        #[arg(long)]
        status: Option<String>,
        /// Only jobs pinned to or held by this agent.
        #[arg(long)]
        node: Option<String>,
        /// Only the jobs of this fan-out group.
        #[arg(long)]
        group: Option<String>,
        /// Which jobs: made by users (default), by the reconciler, by rollouts, by schedules, or
        /// all.
        #[arg(long, default_value = "user", value_parser = ["user", "reconciler", "rollout", "schedule", "all"])]
        kind: String,
        /// Jobs per page (1 to 1000; default 50, or 1000 with --all).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1000))]
        limit: Option<u16>,
        /// Follow the pages to the last one.
        #[arg(long)]
        all: bool,
        /// Keep the listing current: print it again whenever a job event arrives (with -o json,
        /// print each job event as one JSON line instead).
        #[arg(short, long)]
        watch: bool,
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

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    target: Target,
    #[command(flatten)]
    env: Env,
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
    /// Idempotency key: submitting twice with the same key runs the job once.
    #[arg(long, env = "FLUX_IDEMPOTENCY_KEY")]
    idempotency_key: Option<String>,
    /// Join all arguments into one shell command line.
    #[arg(long)]
    shell: bool,
    /// Wait for the job, stream its output and exit with its exit code. Gives up (exit 1) when
    /// the agent the job is pinned to is dead or revoked, or after --wait-timeout.
    #[arg(long, short = 'w')]
    wait: bool,
    /// With --wait: give up (exit 1) when the job has not ended after this long.
    #[arg(long, value_parser = parse_duration, requires = "wait")]
    wait_timeout: Option<Duration>,
    /// Rollout options (with --all): the control plane runs the targets at this rate.
    #[command(flatten)]
    rollout: super::rollout::RolloutFlags,
    /// The command.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

pub async fn run(ctx: &Ctx, cmd: JobCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        JobCmd::Run(r) => submit(ctx, &api, *r).await,
        JobCmd::Get { id } => {
            let job: Job = api.get(&format!("/v1/jobs/{id}")).await?;
            emit(ctx.out, &job)?;
            Ok(())
        }
        JobCmd::List {
            status,
            node,
            group,
            kind,
            limit,
            all,
            watch,
        } => {
            let limit = limit.map_or(if all { 1000 } else { 50 }, usize::from);
            let mut q = format!("/v1/jobs?limit={limit}&kind={kind}");
            for (name, v) in [("status", status), ("node_id", node), ("group", group)] {
                if let Some(v) = v {
                    q.push_str(&format!("&{name}={}", urlencoding(&v)));
                }
            }
            // Opened before the first listing, so that no change after it is missed.
            let mut watcher = match watch {
                true => {
                    let mut w = super::events::Watcher::new(api.with_token(api.token()), "job.*");
                    w.open().await?;
                    Some(w)
                }
                false => None,
            };
            loop {
                list_jobs(ctx, &api, &q, all).await?;
                let Some(w) = watcher.as_mut() else {
                    return Ok(());
                };
                if ctx.out.is_json() {
                    loop {
                        for e in w.next_batch().await? {
                            println!("{}", serde_json::to_string(&e)?);
                        }
                    }
                }
                w.next_batch().await?;
                println!();
            }
        }
        JobCmd::Logs { id, follow } => {
            stream_logs(&api, &id, follow).await?;
            Ok(())
        }
        JobCmd::Cancel { id } => {
            let job: Job = api
                .post(&format!("/v1/jobs/{id}/cancel"), &json!({}))
                .await?;
            emit(
                ctx.out,
                &view(&job, |job| {
                    if job.status.is_terminal() {
                        format!("job {} {}\n", job.job_id, job.status.as_str())
                    } else {
                        format!("job {} cancelling (its agent is stopping it)\n", job.job_id)
                    }
                }),
            )?;
            Ok(())
        }
        JobCmd::Wait { id, timeout } => {
            let pinned: Job = api.get(&format!("/v1/jobs/{id}")).await?;
            let job = tokio::select! {
                j = wait_for(&api, &id, timeout) => j?,
                why = give_up(&api, &pinned, None) => return Err(anyhow!("{why}").into()),
            };
            emit(
                ctx.out,
                &view(&job, |job| {
                    format!("job {} {}\n", job.job_id, job.status.as_str())
                }),
            )?;
            exit_with(job_exit_code(&job))
        }
        JobCmd::Attempts { id } => {
            let attempts: Vec<Attempt> = api.get(&format!("/v1/jobs/{id}/attempts")).await?;
            emit(ctx.out, attempts.as_slice())?;
            Ok(())
        }
    }
}

/// One page of `GET /v1/jobs` and the cursor of the next (the `X-Flux-Next-Cursor` header).
async fn list_page(api: &ApiClient, path: &str) -> Result<(Vec<Job>, Option<String>)> {
    let resp = api
        .send(Method::GET, path, None, Duration::from_secs(30))
        .await?;
    let next = resp
        .headers()
        .get("x-flux-next-cursor")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let jobs = resp.json().await.context("decoding the job list")?;
    Ok((jobs, next))
}

/// Percent-encodes a query value (statuses, node ids and group ids are plain, but a typo
/// must not change the query).
pub(crate) fn urlencoding(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The `If-Match` header of a write made only if the object is still at `version` (no header
/// without one).
pub(crate) fn if_match(version: Option<u64>) -> Vec<(&'static str, String)> {
    version
        .map(|v| ("if-match", v.to_string()))
        .into_iter()
        .collect()
}

/// Sends a write made only if the object is still at `version` (any version without one) and
/// decodes its reply.
pub(crate) async fn send_if_match<T: serde::de::DeserializeOwned>(
    api: &ApiClient,
    method: Method,
    path: &str,
    body: Option<&(dyn flux_core::client::erased::Json + Sync)>,
    version: Option<u64>,
) -> Result<T> {
    api.send_with_headers(
        method,
        path,
        body,
        Duration::from_secs(30),
        &if_match(version),
    )
    .await?
    .json()
    .await
    .context("decoding the reply")
}

/// Where a job runs, as `job run` and `schedule create` take it.
#[derive(clap::Args, Debug)]
pub struct Target {
    /// Agent to run on (default: any online agent of the tenant).
    #[arg(long = "node", short = 'n')]
    node: Option<String>,
    /// Run on an agent this selector matches: KEY=VALUE, or any expression such as
    /// 'role in (web,api),fact.cpus>=4' (repeatable: all must hold).
    #[arg(
        long = "selector",
        short = 'l',
        value_name = "EXPR",
        conflicts_with = "node"
    )]
    selector: Vec<String>,
    /// With --selector: run on every matching agent, one job each (a fan-out; a schedule
    /// resolves the selector at each slot).
    #[arg(long, requires = "selector")]
    pub all: bool,
    /// With --node: accept the job even if no agent has enrolled or registered as that node
    /// yet (one about to enroll); without it such a job is refused.
    #[arg(long, requires = "node")]
    allow_unknown_node: bool,
}

/// The parts of a job's spec that [`Target`] gives: node, selector, fan-out and whether an
/// unknown node is accepted.
pub struct Placement {
    pub node_id: Option<String>,
    pub selector: flux_core::selector::Selector,
    pub all: bool,
    pub allow_unknown_node: bool,
}

impl Target {
    pub fn placement(self) -> Result<Placement> {
        let expr = self.selector.join(",");
        let selector = flux_core::selector::Selector::parse(&expr)
            .map_err(|e| anyhow!("--selector {expr:?}: {e}"))?;
        Ok(Placement {
            node_id: self.node,
            selector,
            all: self.all,
            allow_unknown_node: self.allow_unknown_node,
        })
    }
}

/// A command given as arguments: one argument (or `--shell`) is a shell command line, several
/// are an argv.
pub fn command_of(shell: bool, command: Vec<String>) -> (Option<String>, Option<Vec<String>>) {
    if shell || command.len() == 1 {
        (Some(command.join(" ")), None)
    } else {
        (None, Some(command))
    }
}

/// A job's environment, as `job run` and `schedule create` take it.
#[derive(clap::Args, Debug)]
pub struct Env {
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long = "env", short = 'e', value_parser = parse_kv)]
    env: Vec<(String, String)>,
    /// Secret environment variable NAME, its value taken from fluxctl's own environment (so it
    /// is never on a command line); masked in the job's output and never shown, and a schedule
    /// keeps only its digest (repeatable).
    #[arg(long = "secret-env", value_name = "NAME")]
    secret_env: Vec<String>,
}

impl Env {
    /// The plain variables, and the secret ones with their values read from fluxctl's own
    /// environment.
    pub fn resolve(self) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>)> {
        let secret = self
            .secret_env
            .iter()
            .map(|n| {
                std::env::var(n)
                    .map(|v| (n.clone(), v))
                    .with_context(|| format!("--secret-env {n}: ${n} is not set"))
            })
            .collect::<Result<_>>()?;
        Ok((self.env.into_iter().collect(), secret))
    }
}

/// The request `job run` submits: one argument is a shell command line, several an argv;
/// `--secret-env` values are read from fluxctl's own environment.
fn submit_request(r: RunArgs) -> Result<SubmitJob> {
    let (command, argv) = command_of(r.shell, r.command);
    let (env, secret_env) = r.env.resolve()?;
    let at = r.target.placement()?;
    Ok(SubmitJob {
        command,
        argv,
        node_id: at.node_id,
        env,
        secret_env,
        workdir: r.workdir,
        timeout_secs: r.timeout.map(|d| d.as_secs().max(1)),
        max_attempts: r.attempts,
        priority: r.priority,
        selector: at.selector,
        fan_out: at.all,
        allow_unknown_node: at.allow_unknown_node,
        idempotency_key: r.idempotency_key,
    })
}

/// `job run`: submit, then without --wait print the job (its id in a table).
async fn submit(ctx: &Ctx, api: &ApiClient, r: RunArgs) -> CliResult {
    let (all, wait, limit) = (r.target.all, r.wait, r.wait_timeout);
    let flags = r.rollout.clone();
    let req = submit_request(r)?;
    if all && flags.any() {
        let spec = super::rollout::spec_of(&req, &flags)?;
        return super::rollout::start(ctx, api, &spec, wait).await;
    }
    if all {
        return fan_out(ctx, api, &req, wait, limit).await;
    }
    let reply: serde_json::Value = api.post("/v1/jobs", &req).await?;
    // What the control plane noticed about where the job is to run (a pinned agent that is
    // dead, a selector nothing matches): said, not fatal.
    if let Some(ws) = reply.get("warnings").and_then(|w| w.as_array()) {
        for w in ws.iter().filter_map(|w| w.as_str()) {
            eprintln!("fluxctl: warning: {w}");
        }
    }
    let job: Job = serde_json::from_value(reply).context("reading the submitted job")?;
    if !wait {
        emit(ctx.out, &view(&job, |j| format!("{}\n", j.job_id)))?;
        return Ok(());
    }
    tokio::select! {
        r = run_wait(ctx, api, &job) => r,
        why = give_up(api, &job, limit) => Err(anyhow!("{why}").into()),
    }
}

/// Resolves with why a wait for `job` must give up: `limit` has passed, or the agent the job
/// is pinned to is dead (or revoked) while the job has not ended. Checks every 2 s.
async fn give_up(api: &ApiClient, job: &Job, limit: Option<Duration>) -> String {
    use flux_core::model::{Agent, AgentState};
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    loop {
        let next = tokio::time::Instant::now() + Duration::from_secs(2);
        tokio::time::sleep_until(deadline.map_or(next, |d| d.min(next))).await;
        if let Some(l) = limit
            && deadline.is_some_and(|d| tokio::time::Instant::now() >= d)
        {
            return format!(
                "job {} did not end within the wait timeout ({}s); it is still queued or running",
                job.job_id,
                l.as_secs_f64()
            );
        }
        let Some(node) = &job.node_id else { continue };
        let Ok(agent) = api.get::<Agent>(&format!("/v1/agents/{node}")).await else {
            continue;
        };
        if agent.state != AgentState::Dead {
            continue;
        }
        // The job may have ended meanwhile; the wait itself reports that.
        match api.get::<Job>(&format!("/v1/jobs/{}", job.job_id)).await {
            Ok(j) if !j.status.is_terminal() => {
                let why = if agent.revoked_at.is_some() {
                    "has been revoked"
                } else {
                    "is dead"
                };
                return format!(
                    "job {} is pinned to agent {node}, which {why}; giving up (the job stays \
                     queued: fluxctl job cancel {})",
                    job.job_id, job.job_id
                );
            }
            _ => {}
        }
    }
}

/// `job run --wait`: a table streams the job's output live and notes a failure on stderr;
/// JSON is one document for scripts at the end, the final job and its stored output (both
/// streams). Either way the exit code is the job's ([`job_exit_code`]).
async fn run_wait(ctx: &Ctx, api: &ApiClient, job: &Job) -> CliResult {
    if !ctx.out.is_json() {
        eprintln!("job {} submitted", job.job_id);
        stream_logs(api, &job.job_id, true).await?;
    }
    let done = wait_for(api, &job.job_id, None).await?;
    match ctx.out {
        Output::Json => {
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
        }
        Output::Table | Output::Wide if done.status != JobStatus::Succeeded => {
            eprintln!(
                "{}",
                status_line(
                    "job",
                    &done.job_id,
                    done.status.as_str(),
                    done.error.as_deref()
                )
            );
        }
        Output::Table | Output::Wide => {}
    }
    exit_with(job_exit_code(&done))
}

/// `job run --selector ... --all`: one job per matching agent; with --wait, a table of their
/// results and exit 0 only if every one succeeded.
async fn fan_out(
    ctx: &Ctx,
    api: &ApiClient,
    req: &SubmitJob,
    wait: bool,
    limit: Option<Duration>,
) -> CliResult {
    let value: serde_json::Value = api.post("/v1/jobs", req).await?;
    // The tenant's `rollout_above` turned the fan-out into a rollout.
    if let Some(r) = value.get("rollout") {
        for w in value["warnings"].as_array().into_iter().flatten() {
            eprintln!("fluxctl: warning: {}", w.as_str().unwrap_or_default());
        }
        let r: flux_core::rollout::Rollout =
            serde_json::from_value(r.clone()).context("reading the rollout")?;
        return super::rollout::created(ctx, api, r, wait).await;
    }
    let reply: FanOutReply = serde_json::from_value(value).context("reading the fan-out")?;
    if !wait {
        emit(
            ctx.out,
            &SortedKeys(&view(&reply, |r| {
                r.jobs
                    .iter()
                    .map(|j| format!("{} {}\n", j.job_id, j.node_id.as_deref().unwrap_or("-")))
                    .collect()
            })),
        )?;
        return Ok(());
    }
    let mut done = Vec::with_capacity(reply.jobs.len());
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    for j in &reply.jobs {
        let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
        done.push(wait_for(api, &j.job_id, left).await?);
    }
    emit(
        ctx.out,
        &view(&json!({"group": reply.group, "jobs": done}), |_| {
            done.as_slice().render()
        }),
    )?;
    ok_or_1(done.iter().all(|j| j.status == JobStatus::Succeeded))
}

fn job_table(jobs: &[Job]) -> comfy_table::Table {
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

impl Render for [Job] {
    fn render(&self) -> String {
        format!("{}\n", job_table(self))
    }
}

/// One job (`job get`): its row, and the error that ended it.
impl Render for Job {
    fn render(&self) -> String {
        let mut text = format!("{}\n", job_table(std::slice::from_ref(self)));
        if let Some(e) = &self.error {
            text.push_str(&format!("error: {e}\n"));
        }
        text
    }
}

impl Render for [Attempt] {
    fn render(&self) -> String {
        let mut t = table(&["ATTEMPT", "AGENT", "STATE", "RESULT", "OUTPUT", "NOTE"]);
        for a in self {
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
        format!("{t}\n")
    }
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
        // Each long-poll ends by the deadline, so the wait gives up on time.
        let poll = deadline.map_or(30, |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
                .as_secs()
                .clamp(1, 30)
        });
        let job: Job = api
            .call(
                Method::GET,
                &format!("/v1/jobs/{id}/wait?timeout_secs={poll}"),
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

/// One listing of `job list` (every page with `all`), printed.
async fn list_jobs(ctx: &Ctx, api: &ApiClient, q: &str, all: bool) -> Result<()> {
    let mut jobs = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{q}&cursor={c}"),
            None => q.to_string(),
        };
        let (page, next) = list_page(api, &path).await?;
        jobs.extend(page);
        match next {
            Some(c) if all => cursor = Some(c),
            Some(_) => {
                eprintln!("(more jobs: --all lists every page)");
                break;
            }
            None => break,
        }
    }
    emit(ctx.out, jobs.as_slice())?;
    Ok(())
}

/// A line of `GET /v1/jobs/{id}/logs?format=jsonl`: a note (a new attempt, the job's end) or a
/// chunk of output; lines that are neither are skipped.
#[derive(serde::Deserialize)]
#[serde(untagged)]
enum LogLine {
    Note(LogNote),
    Chunk(StoredChunk),
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
                let chunk = match serde_json::from_slice::<LogLine>(&line) {
                    Ok(LogLine::Note(LogNote { note })) => {
                        if note.contains("attempt") {
                            attempt += 1;
                        }
                        eprintln!("{note}");
                        continue;
                    }
                    Ok(LogLine::Chunk(chunk)) => chunk,
                    Err(_) => continue,
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
