//! `flux-agent`, the process that runs on each target machine. It connects out to the control
//! plane, long-polls for tasks, executes them in their own process group and reports output and
//! exit codes.
//!
//! - here: the command line ([`Args`]), start-up ([`run`]) and signal handling;
//! - [`agent`]: one agent's conversation with the control plane (register, heartbeats, polls);
//! - [`attempt`]: carrying out one task (start, run, upload output, report the result);
//! - [`executor`]: running a command in its own process group;
//! - [`simulate`]: many simulated agents in one process (`--simulate`);
//! - [`harden`]: what keeps jobs away from the agent's token (undumpable, no `FLUX_TOKEN` in
//!   its environment, jobs under another user with `--run-as`).

mod agent;
mod attempt;
mod enroll;
mod executor;
mod facts;
mod harden;
mod retry;
mod simulate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use flux_core::client::{ApiClient, ClientError, TlsOptions};
use tokio_util::sync::CancellationToken;

use agent::{Agent, Exec, Profile};

/// mimalloc instead of the system allocator: under load, glibc's malloc spent about a fifth of
/// fluxd's samples in its own code and arena-lock waits (`scripts/profile.sh`; README, engine
/// figures).
/// The simulator (`--simulate`) shares the machine in benchmarks, so it uses the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Agent token (role agent); prefer --token-file. Given through FLUX_TOKEN, the agent
    /// re-executes itself at start without it, so that it does not stay in its environment.
    #[arg(long, env = "FLUX_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the agent token.
    #[arg(long, env = "FLUX_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// File holding an enrollment token (`fluxctl token create --role enroll`): exchanged once
    /// for the agent's own credential, kept in --state-dir (needed) and renewed by the agent
    /// before it expires. Once a credential is kept there, it is used and the file is not read.
    #[arg(long, env = "FLUX_ENROLL_TOKEN_FILE", conflicts_with_all = ["token", "token_file"], requires = "state_dir")]
    enroll_token_file: Option<PathBuf>,
    /// Node id to enroll as (default: the host name, up to its first dot).
    #[arg(long, env = "FLUX_NODE_ID", requires = "enroll_token_file")]
    node_id: Option<String>,
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
    /// The agent also keeps its registration's session there (mode 0600), so that it resumes
    /// its registration after a restart instead of waiting for the old one to be declared dead.
    #[arg(long, env = "FLUX_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Run jobs as this user (its uid and primary group, its home directory, and a clean
    /// environment) instead of the agent's own user; needs the agent to run as root. Without
    /// it, jobs run as the agent's user and can read whatever the agent can.
    #[arg(long, env = "FLUX_RUN_AS", value_name = "USER")]
    run_as: Option<String>,
    /// How often the agent reads its facts (os, cpus, memory, disk, addresses...) again; they
    /// are sent with a heartbeat only when they changed.
    #[arg(long, env = "FLUX_FACTS_INTERVAL", value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    facts_interval: u64,
    /// How long a run goes before its start is reported (a shorter run is started and ended by
    /// its result: one request and one commit less). Keep it well below the control plane's
    /// `--start-timeout` (60 s by default), after which an attempt not started is requeued.
    #[arg(long, env = "FLUX_START_AFTER", default_value = "100ms", value_parser = parse_start_after)]
    start_after: Duration,
    #[command(flatten)]
    simulate: simulate::SimulateArgs,
}

/// `--start-after`: a duration (`100ms`, `2s`) of at most 10 s.
fn parse_start_after(s: &str) -> Result<Duration, String> {
    let d = flux_core::model::parse_duration(s)?;
    if d > Duration::from_secs(10) {
        return Err(format!("{s:?} is more than 10s"));
    }
    Ok(d)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("label {s:?} must be key=value"))
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

async fn run(args: Args, piped_token: Option<String>) -> Result<ExitCode> {
    let token = match (piped_token, &args.token, &args.token_file) {
        (Some(t), _, _) => t,
        (None, Some(t), _) => {
            tracing::warn!(
                "--token on the command line is visible to every local user; use --token-file"
            );
            t.clone()
        }
        (None, None, Some(f)) => {
            harden::warn_if_shared(f);
            std::fs::read_to_string(f)
                .with_context(|| format!("reading token file {}", f.display()))?
                .trim()
                .to_string()
        }
        (None, None, None) if args.enroll_token_file.is_some() => String::new(),
        (None, None, None) => {
            anyhow::bail!(
                "an agent token is required (--token-file, FLUX_TOKEN or --enroll-token-file)"
            )
        }
    };
    let run_as = match &args.run_as {
        Some(name) => Some(harden::run_as(name)?),
        None => None,
    };
    let tls = TlsOptions {
        ca_file: args.ca.clone(),
        insecure: args.insecure,
    };
    if let Some(n) = args.simulate.simulate {
        return simulate::run(&args, n, token, &tls).await;
    }
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    // Enrolled agents keep their own credential in the state directory and renew it.
    let enrolled_dir = match (&args.enroll_token_file, &args.state_dir) {
        (Some(_), Some(dir)) => Some(dir.clone()),
        _ => None,
    };
    let token = match (&args.enroll_token_file, &enrolled_dir) {
        (Some(file), Some(dir)) => {
            harden::private_dir(dir)
                .with_context(|| format!("creating state directory {}", dir.display()))?;
            match enroll::load_credential(dir) {
                Some(t) => {
                    tracing::info!(dir = %dir.display(), "using the credential kept in the state directory");
                    t
                }
                None => {
                    let node = enroll::node_id(args.node_id.as_deref())?;
                    enroll::enroll(&args.servers, &tls, file, &node, dir, &stop).await?
                }
            }
        }
        _ => token,
    };
    let node_id = flux_core::auth::peek_claims(&token)
        .and_then(|c| c.node_id)
        .context("the token is not an agent token (it carries no node id)")?;
    // Attempts a previous process of this agent launched: reported as interrupted once
    // registered, so that none is delivered and run again as it stands.
    let mut interrupted = Vec::new();
    if let Some(dir) = &args.state_dir {
        harden::private_dir(dir)
            .with_context(|| format!("creating state directory {}", dir.display()))?;
        for o in executor::reap_orphans(dir) {
            if o.killed {
                tracing::warn!(attempt = %o.attempt, "killed a job left running by a previous agent process");
            }
            interrupted.push(o.attempt);
        }
    }
    let api = ApiClient::new(args.servers.clone(), Some(token), &tls)?;
    if let Some(dir) = &args.state_dir {
        api.set_session(agent::load_session(dir));
    }
    let profile = Profile::new(
        &args,
        Exec::Real {
            state_dir: args.state_dir.clone(),
            run_as,
        },
    );
    let agent = Arc::new(Agent::new(api, node_id, Arc::new(profile)));
    let mut refused = retry::Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        match agent.register(&stop).await {
            Ok(()) => break,
            Err(e) if agent::is_session_conflict(&e) => {
                // Another live agent process holds this node (or this one restarted without
                // its session): it can be taken over once the control plane finds it dead.
                let delay = refused.next_delay();
                tracing::warn!(error = %e, ?delay, "registration refused; waiting");
                if retry::stopped_during(&stop, delay).await {
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(e @ ClientError::Api { .. }) => anyhow::bail!("registration refused: {e}"),
            Err(e) => anyhow::bail!("registration failed: {e}"),
        }
    }
    for id in &interrupted {
        agent.report_interrupted(id, &stop).await;
    }
    tokio::spawn(agent.clone().heartbeat_loop(stop.clone()));
    if let Some(dir) = enrolled_dir {
        tokio::spawn(enroll::renew_loop(agent.clone(), dir, stop.clone()));
    }
    let result = agent.clone().poll_loop(stop.clone()).await;
    stop.cancel();
    // Let running tasks report their cancellation.
    agent
        .wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    result.map(|()| ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    // The exec shim of `--run-as`, started by this agent for a job: nothing of the agent runs.
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == harden::EXEC_AS) {
        return harden::exec_as(&argv[2..]);
    }
    // Before anything else: no other process of this user may read this one's memory or
    // environment, and a token given through FLUX_TOKEN leaves the environment.
    if let Err(e) = harden::undumpable() {
        eprintln!("flux-agent: {e:#}");
        return ExitCode::FAILURE;
    }
    let piped_token = match harden::token_out_of_environment() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("flux-agent: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("flux-agent: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args, piped_token)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("flux-agent: {e:#}");
            ExitCode::FAILURE
        }
    }
}
