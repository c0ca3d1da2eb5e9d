//! `flux-agent`, the process that runs on each target machine. It connects out to the control
//! plane, long-polls for tasks, executes them in their own process group and reports output and
//! exit codes.
//!
//! - here: the command line ([`Args`]), start-up ([`run`]) and signal handling;
//! - [`agent`]: one agent's conversation with the control plane (register, heartbeats, polls);
//! - [`attempt`]: carrying out one task (start, run, upload output, report the result);
//! - [`executor`]: running a command in its own process group;
//! - [`simulate`]: many simulated agents in one process (`--simulate`).

mod agent;
mod attempt;
mod executor;
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
