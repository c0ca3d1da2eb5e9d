//! `fluxctl bench jobs`: job round-trip latency (submit → terminal status seen by the client)
//! and throughput against a running control plane with its agents.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flux_core::client::ApiClient;
use flux_core::model::{Job, JobStatus, SubmitJob};
use reqwest::Method;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct Report {
    pub jobs: usize,
    pub concurrency: usize,
    pub failed: usize,
    pub elapsed_secs: f64,
    pub jobs_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
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
            let mut failed = 0usize;
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let t0 = Instant::now();
                let req = SubmitJob {
                    command: Some(command.clone()),
                    node_id: node.clone(),
                    ..SubmitJob::default()
                };
                let job: Job = api.post("/v1/jobs", &req).await?;
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
                bar.inc(1);
            }
            Ok::<_, anyhow::Error>((lat, failed))
        }));
    }
    let mut lat = Vec::with_capacity(count);
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await??;
        lat.extend(l);
        failed += f;
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort();
    Ok(Report {
        jobs: lat.len(),
        concurrency,
        failed,
        elapsed_secs: elapsed,
        jobs_per_sec: lat.len() as f64 / elapsed,
        p50_ms: pct(&lat, 50.0),
        p90_ms: pct(&lat, 90.0),
        p99_ms: pct(&lat, 99.0),
        max_ms: lat.last().map(|d| d.as_secs_f64() * 1000.0).unwrap_or(0.0),
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
