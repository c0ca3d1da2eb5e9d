//! `fluxctl chaos run|plan`: the clap arguments, turning them into [`chaos::Opts`], and the
//! report's text. The run itself (cluster, workload, faults, checker) is [`crate::chaos`].
//! Exit 0 when every invariant held, 1 on a violation, 2 when the run could not be carried
//! out (interrupted included).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use flux_core::model::parse_duration;
use serde_json::json;

use crate::chaos;
use crate::context::Ctx;
use crate::error::{CliError, CliResult};
use crate::output::{Render, emit, table, view};

#[derive(Subcommand, Debug)]
pub enum ChaosCmd {
    /// Start a local cluster (redis-server, fluxd nodes, agents), run jobs and a desired state
    /// on it, inject the seeded faults, heal, and check the invariants on the whole history.
    /// Exit 0: every invariant held; 1: a violation; 2: the run itself failed.
    Run(ChaosRunArgs),
    /// Print the fault schedule a seed gives, without running anything.
    Plan(ChaosPlanArgs),
}

#[derive(clap::Args, Debug)]
pub struct ChaosPlanArgs {
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

#[derive(clap::Args, Debug)]
pub struct ChaosRunArgs {
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

pub async fn run(ctx: &Ctx, cmd: ChaosCmd) -> CliResult {
    // chaos run reserves 1 for "an invariant was violated": its errors are 2.
    let passed = match cmd {
        ChaosCmd::Plan(p) => plan(ctx, &p).map(|()| true),
        ChaosCmd::Run(a) => run_cluster(ctx, &a).await,
    }
    .map_err(|e| CliError::new(e, 2))?;
    if passed {
        Ok(())
    } else {
        Err(CliError::code(1))
    }
}

fn plan(ctx: &Ctx, p: &ChaosPlanArgs) -> Result<()> {
    let seed = p.seed();
    let scenarios = p.scenarios()?;
    let faults = flux_core::chaos::schedule(seed, &scenarios, p.duration.as_millis() as u64);
    emit(
        ctx.out,
        &view(&json!({"seed": seed, "faults": faults}), |_| {
            let mut t = table(&["AT MS", "FAULT", "TARGET", "HOLD MS"]);
            for f in &faults {
                t.add_row(vec![
                    f.at_ms.to_string(),
                    f.scenario.to_string(),
                    f.target.to_string(),
                    f.hold_ms.to_string(),
                ]);
            }
            format!("seed {seed}\n{t}\n")
        }),
    )
}

/// Runs the cluster and prints its report; whether every invariant held.
async fn run_cluster(ctx: &Ctx, a: &ChaosRunArgs) -> Result<bool> {
    let bin_dir = match &a.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("fluxctl's directory")?
            .to_path_buf(),
    };
    let redis_server = match &a.redis_server {
        Some(p) => p.clone(),
        None => flux_core::testing::on_path("redis-server").context(
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
        r = chaos::run(opts, !ctx.out.is_json()) => r?,
        _ = terminated() => anyhow::bail!("interrupted; the cluster was stopped"),
    };
    emit(ctx.out, &report)?;
    Ok(report.passed)
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

/// The report as people read it: the run, the faults as carried out, the workload, the
/// history and every invariant's verdict.
impl Render for chaos::Report {
    fn render(&self) -> String {
        let r = self;
        let mut text = format!(
            "seed {}  scenarios {}  {} nodes, {} agents, {:.0} s{}\n",
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
        text.push_str(&format!("{t}\n"));
        let w = &r.workload;
        text.push_str(&format!(
            "jobs: {} submitted, {} acknowledged, {} succeeded, {} executions, {} unanswered; {} state targets\n",
            w.submitted, w.acknowledged, w.succeeded, w.executions, w.unacknowledged, w.state_targets
        ));
        text.push_str(&format!(
            "history: {} leader writes in {} epochs, {} refused as fenced, {} results, {} jobs collected; failover p50 {} ms, max {} ms\n",
            r.history.leader_writes,
            r.history.epochs,
            r.history.fenced,
            r.history.results,
            r.history.collected,
            r.failover.p50_ms,
            r.failover.max_ms
        ));
        let mut t = table(&["INVARIANT", "RESULT", "VIOLATIONS"]);
        for i in &r.invariants {
            t.add_row(vec![
                i.invariant.to_string(),
                if i.held { "held" } else { "VIOLATED" }.to_string(),
                i.violations.to_string(),
            ]);
        }
        text.push_str(&format!("{t}\n"));
        for v in &r.violations {
            text.push_str(&format!("violation: {}: {}\n", v.invariant, v.detail));
        }
        if let Some(d) = &r.work_dir {
            text.push_str(&format!("logs and histories kept in {}\n", d.display()));
        }
        text.push_str(if r.passed { "PASSED\n" } else { "FAILED\n" });
        text
    }
}
