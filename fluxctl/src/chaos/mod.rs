//! `fluxctl chaos run`: starts a local cluster (real `redis-server`, `fluxd` nodes and
//! `flux-agent` processes), runs a job and desired-state workload, injects the seeded fault
//! schedule, heals, and hands what it saw to the checker in [`flux_core::chaos`].
//!
//! Every `fluxd` reaches Redis through its own fault proxy (partitions), records its
//! history with `--history-log`, and every job the workload runs appends its attempt id to a
//! file named after the job, so the checker can compare the work done on agents with what the
//! store holds.
//!
//! - here: [`Opts`] and [`run`], the run's timeline (start, faults under load, heal, settle,
//!   observe, judge);
//! - [`cluster`]: the local cluster and how each fault is carried out;
//! - [`workload`]: the jobs and the desired state, and the wait for them to settle;
//! - [`report`]: the report types (printed by `fluxctl`'s main).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use flux_core::chaos::{
    self, FailoverSeen, Fault, HistoryEvent, JobSeen, Observations, Scenario, Spread,
};
use flux_core::client::ApiClient;
use flux_core::model::{JobStatus, now_ms};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

mod cluster;
mod receiver;
mod report;
mod workload;

use cluster::Cluster;
pub use report::{FaultRun, HistoryStats, InvariantResult, Report, Workload};
use workload::{Seen, declare_state, job_command, settle, submit_jobs};

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

pub(super) const TENANT: &str = "default";
pub(super) const STATE: &str = "chaos-marks";
/// Longest wait for a new leader after a leader fault.
pub(super) const FAILOVER_LIMIT: Duration = Duration::from_secs(30);
/// Longest a single submission is retried before it counts as unacknowledged.
pub(super) const SUBMIT_PATIENCE: Duration = Duration::from_secs(20);

/// Polls `f` every 50 ms until it gives `Some`, or fails after `limit` with `what`.
async fn poll<T, F, Fut>(what: &str, limit: Duration, f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    flux_core::testing::poll_until(Duration::from_millis(50), limit, f)
        .await
        .ok_or_else(|| anyhow!("timed out after {limit:?} waiting for {what}"))
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
    // The work directory keeps every log; a panic need not print them.
    flux_core::testing::proc::echo_logs_on_panic(false);
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

/// What the workload got back: acknowledged job ids, submissions never acknowledged, and
/// submissions sent.
type Submitted = (Vec<String>, usize, usize);

/// The run's timeline: start the cluster and the state, inject the faults under load, heal,
/// wait for everything to settle, then judge what was observed.
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
    // A rollout over every agent, driven by the leader through the faults.
    let rollout = workload::start_rollout(&cluster.api, work, &cluster.agent_ids).await?;
    workload::declare_schedule(&cluster.api).await?;
    // A webhook delivered through the faults to a receiver out of their reach.
    let secret = format!("chaos-{:016x}-secret", o.seed);
    let receiver = receiver::Receiver::start(secret.clone()).await?;
    workload::declare_webhook(&cluster.api, receiver.port, &secret).await?;
    let (faults, submitted) = faults_under_load(o, work, &mut cluster, &plan, &say).await?;

    // Healed: everything runs again. Drift every target so convergence is shown afresh.
    let healed_at = now_ms();
    for a in &cluster.agent_ids {
        cluster.drift(a);
    }
    say(format!(
        "faults over; {} jobs acknowledged; waiting for every job and target to settle",
        submitted.0.len()
    ));
    let (jobs, targets) = settle(
        &cluster.api,
        &work.join("marks"),
        &submitted.0,
        healed_at,
        o.heal_timeout,
    )
    .await;
    let rollout_seen = match &rollout {
        Some(id) => vec![workload::observe_rollout(&cluster.api, work, id, o.heal_timeout).await],
        None => Vec::new(),
    };
    let schedule = workload::observe_schedule(&cluster.api).await?;
    let webhook = workload::observe_webhook(&cluster.api, &receiver, o.heal_timeout).await?;
    let rollout_schedule = workload::observe_rollout_schedule(&cluster.api).await?;
    let (history, torn) = read_history(&work.join("history"))?;

    let (acked, unacked, sent) = submitted;
    let mut workload = Workload {
        submitted: sent,
        acknowledged: acked.len(),
        unacknowledged: unacked,
        state_targets: targets.len(),
        webhook_events: webhook.expected.len(),
        webhook_deliveries: webhook.received.len(),
        schedule_rollouts: rollout_schedule.job_groups.len(),
        ..Workload::default()
    };
    let repairs = workload::observe_repairs(work, targets.len());
    let obs = Observations {
        jobs: observe_jobs(work, &acked, &jobs, &mut workload),
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
        rollouts: rollout_seen,
        schedule: Some(schedule),
        repairs: Some(repairs),
        webhook: Some(webhook),
        rollout_schedule: Some(rollout_schedule),
    };
    drop(cluster);
    Ok(judge(o, &obs, faults, workload, torn))
}

/// Runs the workload while the faults of `plan` are injected at their times, until the run's
/// duration is over; returns the faults as carried out and what the workload got back.
async fn faults_under_load(
    o: &Opts,
    work: &Path,
    cluster: &mut Cluster,
    plan: &[Fault],
    say: &dyn Fn(String),
) -> Result<(Vec<FaultRun>, Submitted)> {
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
        for f in plan {
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
    let submitted = submitter.await.context("workload task")?;
    outcome?;
    Ok((faults, submitted))
}

/// What became of each acknowledged job: its status and attempts as last seen, and the
/// executions its agents recorded in `runs/`; counts executions and successes in `workload`.
fn observe_jobs(
    work: &Path,
    acked: &[String],
    jobs: &BTreeMap<String, Seen>,
    workload: &mut Workload,
) -> Vec<JobSeen> {
    let mut seen_jobs = Vec::new();
    for id in acked {
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
            None => (Some(JobStatus::Queued), Vec::new()),
        };
        if status == Some(JobStatus::Succeeded) {
            workload.succeeded += 1;
        }
        seen_jobs.push(JobSeen {
            job_id: id.clone(),
            status,
            attempts,
            executions,
        });
    }
    seen_jobs
}

/// Checks the observations and puts the report together.
fn judge(
    o: &Opts,
    obs: &Observations,
    faults: Vec<FaultRun>,
    workload: Workload,
    torn: usize,
) -> Report {
    let mut violations = chaos::check(obs);
    let invariants = InvariantResult::all(&violations);
    let history = HistoryStats::of(&obs.history, torn);
    let passed = violations.is_empty();
    violations.truncate(50);
    let failovers: Vec<u64> = faults.iter().filter_map(|f| f.failover_ms).collect();
    Report {
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
    }
}
