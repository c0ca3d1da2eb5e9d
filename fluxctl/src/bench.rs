//! `fluxctl bench jobs`: job round-trip latency (submit → terminal status seen by the client)
//! and throughput against a running control plane with its agents.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flux_core::client::ApiClient;
use std::collections::BTreeMap;

use flux_core::model::{Job, JobStatus, SubmitJob};
use flux_core::reconcile::TargetState;
use flux_core::state::StateView;
use flux_core::state::{StateSpec, Targets};
use reqwest::Method;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub jobs: usize,
    pub concurrency: usize,
    pub failed: usize,
    pub elapsed_secs: f64,
    pub jobs_per_sec: f64,
    /// Round trip: from submission until the client saw the job's terminal status.
    #[serde(flatten)]
    pub round_trip: Latency,
    /// Submission alone: `POST /v1/jobs` until it is acknowledged.
    pub submit: Latency,
    /// Dispatch: from the job's creation until its agent started it (server clock).
    pub dispatch: Latency,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub samples: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(mut v: Vec<Duration>) -> Latency {
        v.sort();
        Latency {
            samples: v.len(),
            p50_ms: pct(&v, 50.0),
            p90_ms: pct(&v, 90.0),
            p99_ms: pct(&v, 99.0),
            max_ms: v.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
        }
    }
}

/// Percentile of sorted samples (nearest rank).
fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1000.0
}

/// Submits `count` jobs running `command` from `concurrency` workers; each worker submits one
/// job and waits for its end before the next. Bounded by `deadline` overall.
pub async fn jobs(
    api: Arc<ApiClient>,
    count: usize,
    concurrency: usize,
    command: String,
    node: Option<String>,
    deadline: Duration,
    progress: bool,
) -> Result<Report> {
    if count == 0 || concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let bar = if progress {
        indicatif::ProgressBar::new(count as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let stop_at = tokio::time::Instant::now() + deadline;
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (api, next, command, node, bar) = (
            api.clone(),
            next.clone(),
            command.clone(),
            node.clone(),
            bar.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut submit = Vec::new();
            let mut dispatch = Vec::new();
            let mut failed = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                let req = SubmitJob {
                    command: Some(command.clone()),
                    node_id: node.clone(),
                    ..SubmitJob::default()
                };
                let job: Job = api.post("/v1/jobs", &req).await?;
                submit.push(t0.elapsed());
                let done = loop {
                    if tokio::time::Instant::now() >= stop_at {
                        bail!("benchmark deadline passed with jobs still running");
                    }
                    let j: Job = api
                        .call(
                            Method::GET,
                            &format!("/v1/jobs/{}/wait?timeout_secs=10", job.job_id),
                            None,
                            Duration::from_secs(30),
                        )
                        .await?;
                    if j.status.is_terminal() {
                        break j;
                    }
                };
                if done.status != JobStatus::Succeeded {
                    failed += 1;
                }
                lat.push(t0.elapsed());
                if let Some(started) = done.started_at {
                    dispatch.push(Duration::from_millis(
                        started.saturating_sub(done.created_at),
                    ));
                }
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>((lat, submit, dispatch, failed))
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let (mut submit, mut dispatch) = (Vec::new(), Vec::new());
    let mut failed = 0;
    for w in workers {
        let (l, s, d, f) = w.await??;
        lat.extend(l);
        submit.extend(s);
        dispatch.extend(d);
        failed += f;
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    Ok(Report {
        jobs: lat.len(),
        concurrency,
        failed,
        elapsed_secs: elapsed,
        jobs_per_sec: lat.len() as f64 / elapsed,
        round_trip: Latency::of(lat),
        submit: Latency::of(submit),
        dispatch: Latency::of(dispatch),
    })
}

/// Result of `fluxctl bench submit`.
#[derive(Debug, Serialize)]
pub struct SubmitReport {
    pub jobs: usize,
    pub concurrency: usize,
    /// Submissions refused (429 from a quota or load shedding, other errors).
    pub refused: usize,
    pub elapsed_secs: f64,
    pub submits_per_sec: f64,
    pub latency: Latency,
}

/// Submits `count` jobs from `concurrency` workers as fast as they are acknowledged, without
/// waiting for them to run: the control plane's admission throughput.
pub async fn submit(
    api: Arc<ApiClient>,
    count: usize,
    concurrency: usize,
    command: String,
    deadline: Duration,
) -> Result<SubmitReport> {
    if count == 0 || concurrency == 0 {
        bail!("--count and --concurrency must be at least 1");
    }
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let stop_at = Instant::now() + deadline;
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (api, next, command) = (api.clone(), next.clone(), command.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut refused) = (Vec::new(), 0usize);
            while Instant::now() < stop_at && next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                let req = SubmitJob {
                    command: Some(command.clone()),
                    ..SubmitJob::default()
                };
                match api.post::<Job, _>("/v1/jobs", &req).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => refused += 1,
                }
            }
            (lat, refused)
        }));
    }
    let (mut lat, mut refused) = (Vec::with_capacity(count), 0);
    for w in workers {
        let (l, r) = w.await?;
        lat.extend(l);
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(SubmitReport {
        jobs: lat.len(),
        concurrency,
        refused,
        elapsed_secs: elapsed,
        submits_per_sec: lat.len() as f64 / elapsed,
        latency: Latency::of(lat),
    })
}

/// Result of `fluxctl bench converge`.
#[derive(Debug, Serialize)]
pub struct ConvergeReport {
    pub targets: usize,
    pub compliant: usize,
    pub failed: usize,
    /// From the apply until every target settled, as seen by the client.
    pub elapsed_secs: f64,
    /// Per target: from the state's creation to the target turning compliant (server clock).
    #[serde(flatten)]
    pub to_compliant: Latency,
}

/// Declares a throwaway state on the chosen agents (`check`: a marker file exists, `apply`:
/// create it), waits until every target is settled, reports how long each took and deletes the
/// state again.
pub async fn converge(
    api: &ApiClient,
    labels: BTreeMap<String, String>,
    dir: &str,
    timeout: Duration,
    progress: bool,
) -> Result<ConvergeReport> {
    let agents = if labels.is_empty() {
        let all: Vec<flux_core::model::Agent> = api.get("/v1/agents").await?;
        let online: Vec<String> = all
            .into_iter()
            .filter(|a| a.state == flux_core::model::AgentState::Online)
            .map(|a| a.node_id)
            .collect();
        if online.is_empty() {
            bail!("no agent is online");
        }
        online
    } else {
        Vec::new()
    };
    let name = format!("bench-converge-{:08x}", rand::random::<u32>());
    let marker = format!("{dir}/{name}/$FLUX_NODE_ID");
    let spec = StateSpec {
        name: name.clone(),
        targets: Targets { agents, labels },
        check: format!("test -f \"{marker}\""),
        apply: format!("mkdir -p \"{dir}/{name}\" && touch \"{marker}\""),
        interval_secs: 3600,
        timeout_secs: 60,
        env: BTreeMap::new(),
        desired_exit_code: 0,
    };
    let started = Instant::now();
    let created: StateView = api
        .call(
            Method::PUT,
            &format!("/v1/states/{name}"),
            Some(&flux_core::client::erased::Body(&spec)),
            Duration::from_secs(30),
        )
        .await?;
    let want = [(name.clone(), created.version)].into_iter().collect();
    let waited = crate::states::wait(api, &want, timeout, !progress).await;
    let elapsed = started.elapsed().as_secs_f64();
    let view: Result<StateView, _> = api.get(&format!("/v1/states/{name}")).await;
    let _ = api
        .send(
            Method::DELETE,
            &format!("/v1/states/{name}"),
            None,
            Duration::from_secs(30),
        )
        .await;
    let c = waited?;
    let view = view?;
    let lat: Vec<Duration> = view
        .status
        .iter()
        .filter(|t| t.status == TargetState::Compliant)
        .filter_map(|t| t.last_change)
        .map(|at| Duration::from_millis(at.saturating_sub(view.created_at)))
        .collect();
    Ok(ConvergeReport {
        targets: c.targets,
        compliant: c.compliant,
        failed: c.failed,
        elapsed_secs: elapsed,
        to_compliant: Latency::of(lat),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(pct(&v, 50.0), 50.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&v, 100.0), 100.0);
        assert_eq!(pct(&v[..1], 99.0), 1.0);
        assert_eq!(pct(&[], 50.0), 0.0);
    }
}
