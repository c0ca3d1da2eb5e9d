//! `fluxctl bench jobs` and `bench submit`: job round-trip latency (submit → terminal status
//! seen by the client) and throughput against a running control plane with its agents, and
//! `bench converge`: time for a new state to become compliant.
//!
//! The client side is built so that it does not cap what it measures: each worker keeps one
//! request in flight, and every [`WORKERS_PER_CONNECTION`] workers get their own HTTP/2
//! connection (fluxd serves at most 200 concurrent streams on one connection, and a worker's
//! `wait` holds its stream for most of the job's life), opened and warmed up before the clock
//! starts. Requests that fail are counted as errors (a 429 waits its Retry-After, at most one
//! second) instead of ending the run, and the run is bounded by `--duration` (no new jobs after
//! it) and `--deadline` (jobs still unfinished then are counted as such).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use flux_core::client::{ApiClient, ClientError};
use std::collections::BTreeMap;

use flux_core::model::{Job, JobStatus, SubmitJob};
use flux_core::reconcile::TargetState;
use flux_core::state::StateView;
use flux_core::state::{StateSpec, Targets};
use reqwest::{Method, StatusCode};
use serde::Serialize;

/// Largest `--concurrency` of `bench jobs` and `bench submit`.
pub const MAX_CONCURRENCY: u32 = 1024;
/// Workers sharing one HTTP/2 connection by default: each has one request in flight at a time,
/// well under the 200 streams fluxd serves per connection.
pub const WORKERS_PER_CONNECTION: usize = 64;
/// Largest `--connections`.
pub const MAX_CONNECTIONS: u32 = 256;

/// How a throughput run is driven.
#[derive(Debug, Clone)]
pub struct Load {
    /// Jobs to issue at most.
    pub count: usize,
    /// Workers, each with one job (or submission) in flight.
    pub concurrency: usize,
    /// HTTP/2 connections the workers are spread over; `None`: one per
    /// [`WORKERS_PER_CONNECTION`] workers.
    pub connections: Option<usize>,
    /// No new job is issued after this long.
    pub duration: Option<Duration>,
    /// The whole run ends by then; jobs not finished are counted as unfinished.
    pub deadline: Duration,
}

impl Load {
    /// Checks the bounds (the command line checks them too; this guards other callers).
    pub fn validate(&self) -> Result<()> {
        if self.count == 0 {
            bail!("--count must be at least 1");
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY as usize {
            bail!(
                "--concurrency must be between 1 and {MAX_CONCURRENCY} (got {})",
                self.concurrency
            );
        }
        if let Some(c) = self.connections
            && (c == 0 || c > MAX_CONNECTIONS as usize)
        {
            bail!("--connections must be between 1 and {MAX_CONNECTIONS} (got {c})");
        }
        Ok(())
    }

    /// Workers actually started: no more than there are jobs.
    fn workers(&self) -> usize {
        self.concurrency.min(self.count)
    }

    /// Connections opened for the workers.
    pub fn connection_count(&self) -> usize {
        connections_for(self.workers(), self.connections)
    }
}

/// Connections for `workers` workers: as asked (never more than there are workers), or one per
/// [`WORKERS_PER_CONNECTION`].
fn connections_for(workers: usize, asked: Option<usize>) -> usize {
    match asked {
        Some(c) => c.clamp(1, workers.max(1)),
        None => workers.div_ceil(WORKERS_PER_CONNECTION).max(1),
    }
}

/// Opens `n` clients, each with its own connection pool, and makes one call on each alone so
/// that each opens exactly one connection (HTTP/2 through ALPN), which its workers then share;
/// the TLS handshakes are thereby kept out of the measurement.
pub async fn connect(
    make: impl Fn() -> Result<ApiClient>,
    n: usize,
) -> Result<Vec<Arc<ApiClient>>> {
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let c = make()?;
        c.send(Method::GET, "/healthz", None, Duration::from_secs(10))
            .await?;
        clients.push(Arc::new(c));
    }
    Ok(clients)
}

/// How long to hold off after a failed request: a 429's Retry-After (at most one second) or
/// a short pause, so that a refusing server is not hammered in a tight loop.
fn pause_after(e: &ClientError) -> Duration {
    match e {
        ClientError::Api {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            ..
        } => Duration::from_secs(retry_after.unwrap_or(1)).min(Duration::from_secs(1)),
        _ => Duration::from_millis(50),
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    /// Jobs that reached a terminal status (succeeded or not).
    pub jobs: usize,
    pub concurrency: usize,
    /// HTTP/2 connections the workers were spread over.
    pub connections: usize,
    /// Jobs that ended in another status than succeeded.
    pub failed: usize,
    /// Requests that failed (refused submissions, failed waits); their jobs are not counted.
    pub errors: usize,
    /// Jobs submitted but not seen finished by the deadline.
    pub unfinished: usize,
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

impl Report {
    /// Whether every job issued ran and succeeded, with no request failing.
    pub fn clean(&self) -> bool {
        self.failed == 0 && self.errors == 0 && self.unfinished == 0
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize, PartialEq)]
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

/// Hands out job numbers until `count` are issued or `until` has passed.
struct Issuer {
    next: AtomicUsize,
    count: usize,
    until: Option<Instant>,
}

impl Issuer {
    fn new(count: usize, start: Instant, duration: Option<Duration>) -> Issuer {
        Issuer {
            next: AtomicUsize::new(0),
            count,
            until: duration.map(|d| start + d),
        }
    }

    /// Whether another job may be issued now.
    fn take(&self) -> bool {
        if self.until.is_some_and(|u| Instant::now() >= u) {
            return false;
        }
        self.next.fetch_add(1, Ordering::Relaxed) < self.count
    }
}

/// One worker's tallies.
#[derive(Default)]
struct Tally {
    lat: Vec<Duration>,
    submit: Vec<Duration>,
    dispatch: Vec<Duration>,
    failed: usize,
    errors: usize,
    unfinished: usize,
}

impl Tally {
    /// Adds a worker's tallies to these.
    fn absorb(&mut self, t: Tally) {
        self.lat.extend(t.lat);
        self.submit.extend(t.submit);
        self.dispatch.extend(t.dispatch);
        self.failed += t.failed;
        self.errors += t.errors;
        self.unfinished += t.unfinished;
    }

    /// The report of a run that took `elapsed_secs`, from all its workers' tallies.
    fn report(self, concurrency: usize, connections: usize, elapsed_secs: f64) -> Report {
        Report {
            jobs: self.lat.len(),
            concurrency,
            connections,
            failed: self.failed,
            errors: self.errors,
            unfinished: self.unfinished,
            elapsed_secs,
            jobs_per_sec: self.lat.len() as f64 / elapsed_secs,
            round_trip: Latency::of(self.lat),
            submit: Latency::of(self.submit),
            dispatch: Latency::of(self.dispatch),
        }
    }
}

/// Waits failing this many times in a row give the job up (counted unfinished).
const WAIT_TRIES: u32 = 5;

/// The id of the job a reply's `Location` (`/v1/jobs/{id}`) names.
fn job_of_location(resp: &reqwest::Response) -> Option<String> {
    let at = resp
        .headers()
        .get(reqwest::header::LOCATION)?
        .to_str()
        .ok()?;
    let id = at.strip_prefix("/v1/jobs/")?;
    flux_core::model::valid_ident(id).then(|| id.to_string())
}

/// Runs jobs of `command` from `load.concurrency` workers over `clients`; each worker submits
/// one job and waits for its end before the next, both in one request (`POST /v1/jobs/run`).
pub async fn jobs(
    clients: Vec<Arc<ApiClient>>,
    load: &Load,
    command: String,
    node: Option<String>,
    progress: bool,
) -> Result<Report> {
    load.validate()?;
    if clients.is_empty() {
        bail!("no client to run the benchmark with");
    }
    let bar = if progress {
        indicatif::ProgressBar::new(load.count as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let start = Instant::now();
    let issuer = Arc::new(Issuer::new(load.count, start, load.duration));
    let stop_at = tokio::time::Instant::now() + load.deadline;
    let req = Arc::new(SubmitJob {
        command: Some(command),
        node_id: node,
        ..SubmitJob::default()
    });
    let mut workers = Vec::new();
    for w in 0..load.workers() {
        let worker = JobWorker {
            api: clients[w % clients.len()].clone(),
            issuer: issuer.clone(),
            req: req.clone(),
            bar: bar.clone(),
            stop_at,
        };
        workers.push(tokio::spawn(worker.run()));
    }
    let mut all = Tally::default();
    for w in workers {
        all.absorb(w.await?);
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    Ok(all.report(load.concurrency, clients.len(), elapsed))
}

/// What one `bench jobs` worker runs with.
struct JobWorker {
    api: Arc<ApiClient>,
    issuer: Arc<Issuer>,
    req: Arc<SubmitJob>,
    bar: indicatif::ProgressBar,
    stop_at: tokio::time::Instant,
}

/// What a worker does after one job.
enum Next {
    /// Goes on to the next job, if the issuer gives one.
    Job,
    /// Stops: the deadline passed.
    Stop,
}

impl JobWorker {
    /// Runs one job after the other until the issuer or the deadline says stop.
    async fn run(self) -> Tally {
        let mut t = Tally::default();
        while self.issuer.take() {
            if tokio::time::Instant::now() >= self.stop_at {
                break;
            }
            if let Next::Stop = self.one_job(&mut t).await {
                break;
            }
        }
        t
    }

    /// Submits one job, waits for its end and tallies it.
    async fn one_job(&self, t: &mut Tally) -> Next {
        let t0 = Instant::now();
        // Submitted and waited for in one request; its headers say the submission
        // was taken.
        let resp = match self
            .api
            .send(
                Method::POST,
                "/v1/jobs/run?timeout_secs=10",
                Some(&flux_core::client::erased::Body(&*self.req)),
                Duration::from_secs(30),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                t.errors += 1;
                tokio::time::sleep(pause_after(&e)).await;
                return Next::Job;
            }
        };
        t.submit.push(t0.elapsed());
        let Some(job_id) = job_of_location(&resp) else {
            t.errors += 1;
            return Next::Job;
        };
        let ended = match resp
            .bytes()
            .await
            .map(|b| serde_json::from_slice::<Job>(&b))
        {
            Ok(Ok(j)) if j.status.is_terminal() => Some(j),
            Ok(Ok(_)) => None,
            _ => {
                t.errors += 1;
                None
            }
        };
        let done = match self.wait_for_end(&job_id, ended, t).await {
            Ok(j) => j,
            Err(next) => return next,
        };
        if done.status != JobStatus::Succeeded {
            t.failed += 1;
        }
        t.lat.push(t0.elapsed());
        if let Some(started) = done.started_at {
            t.dispatch.push(Duration::from_millis(
                started.saturating_sub(done.created_at),
            ));
        }
        self.bar.inc(1);
        Next::Job
    }

    /// The job, once ended: as the run request saw it (`ended`), or else waited for on its own;
    /// `Err` says what the worker does next when the waits keep failing or the deadline passes.
    async fn wait_for_end(
        &self,
        job_id: &str,
        mut ended: Option<Job>,
        t: &mut Tally,
    ) -> Result<Job, Next> {
        // A job still running at the end of that wait is waited for on its own.
        let path = format!("/v1/jobs/{job_id}/wait?timeout_secs=10");
        let mut tries = 0;
        loop {
            if let Some(j) = ended.take() {
                return Ok(j);
            }
            if tokio::time::Instant::now() >= self.stop_at {
                t.unfinished += 1;
                return Err(Next::Stop);
            }
            match self
                .api
                .call::<Job>(Method::GET, &path, None, Duration::from_secs(30))
                .await
            {
                Ok(j) if j.status.is_terminal() => return Ok(j),
                Ok(_) => tries = 0,
                Err(e) => {
                    t.errors += 1;
                    tries += 1;
                    if tries >= WAIT_TRIES {
                        t.unfinished += 1;
                        return Err(Next::Job);
                    }
                    tokio::time::sleep(pause_after(&e)).await;
                }
            }
        }
    }
}

/// Result of `fluxctl bench submit`.
#[derive(Debug, Serialize)]
pub struct SubmitReport {
    pub jobs: usize,
    pub concurrency: usize,
    /// HTTP/2 connections the workers were spread over.
    pub connections: usize,
    /// Submissions refused (429 from a quota or load shedding, other errors).
    pub refused: usize,
    pub elapsed_secs: f64,
    pub submits_per_sec: f64,
    pub latency: Latency,
}

/// Submits jobs from `load.concurrency` workers as fast as they are acknowledged, without
/// waiting for them to run: the control plane's admission throughput.
pub async fn submit(
    clients: Vec<Arc<ApiClient>>,
    load: &Load,
    command: String,
) -> Result<SubmitReport> {
    load.validate()?;
    if clients.is_empty() {
        bail!("no client to run the benchmark with");
    }
    let start = Instant::now();
    let issuer = Arc::new(Issuer::new(load.count, start, load.duration));
    let stop_at = Instant::now() + load.deadline;
    let req = Arc::new(SubmitJob {
        command: Some(command),
        ..SubmitJob::default()
    });
    let mut workers = Vec::new();
    for w in 0..load.workers() {
        let api = clients[w % clients.len()].clone();
        let (issuer, req) = (issuer.clone(), req.clone());
        workers.push(tokio::spawn(async move {
            let (mut lat, mut refused) = (Vec::new(), 0usize);
            while Instant::now() < stop_at && issuer.take() {
                let t0 = Instant::now();
                match api.post::<Job, _>("/v1/jobs", &*req).await {
                    Ok(_) => lat.push(t0.elapsed()),
                    Err(_) => refused += 1,
                }
            }
            (lat, refused)
        }));
    }
    let (mut lat, mut refused) = (Vec::with_capacity(load.count.min(1 << 20)), 0);
    for w in workers {
        let (l, r) = w.await?;
        lat.extend(l);
        refused += r;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(SubmitReport {
        jobs: lat.len(),
        concurrency: load.concurrency,
        connections: clients.len(),
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
        targets: Targets {
            agents,
            labels: flux_core::selector::Selector::labels(labels),
        },
        check: format!("test -f \"{marker}\""),
        apply: format!("mkdir -p \"{dir}/{name}\" && touch \"{marker}\""),
        interval_secs: 3600,
        timeout_secs: 60,
        env: BTreeMap::new(),
        desired_exit_code: 0,
        rollout: None,
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
        assert_eq!(pct(&v, 90.0), 90.0);
        assert_eq!(pct(&v, 99.0), 99.0);
        assert_eq!(pct(&v, 100.0), 100.0);
        assert_eq!(pct(&v[..1], 99.0), 1.0);
        assert_eq!(pct(&[], 50.0), 0.0);
        // Ten samples: the 99th percentile is the largest, the median the fifth.
        assert_eq!(pct(&v[..10], 99.0), 10.0);
        assert_eq!(pct(&v[..10], 50.0), 5.0);
    }

    #[test]
    fn latency_sorts_its_samples_first() {
        let v = [7u64, 1, 3, 9, 5]
            .into_iter()
            .map(Duration::from_millis)
            .collect();
        assert_eq!(
            Latency::of(v),
            Latency {
                samples: 5,
                p50_ms: 5.0,
                p90_ms: 9.0,
                p99_ms: 9.0,
                max_ms: 9.0
            }
        );
        assert_eq!(Latency::of(Vec::new()).samples, 0);
        assert_eq!(Latency::of(Vec::new()).max_ms, 0.0);
    }

    fn load(count: usize, concurrency: usize, connections: Option<usize>) -> Load {
        Load {
            count,
            concurrency,
            connections,
            duration: None,
            deadline: Duration::from_secs(60),
        }
    }

    #[test]
    fn concurrency_is_bounded_and_named_when_refused() {
        assert!(load(10, 1, None).validate().is_ok());
        assert!(load(10, MAX_CONCURRENCY as usize, None).validate().is_ok());
        for (l, flag) in [
            (load(10, 0, None), "--concurrency"),
            (
                load(10, MAX_CONCURRENCY as usize + 1, None),
                "--concurrency",
            ),
            (load(0, 1, None), "--count"),
            (load(10, 4, Some(0)), "--connections"),
            (
                load(10, 4, Some(MAX_CONNECTIONS as usize + 1)),
                "--connections",
            ),
        ] {
            let e = l.validate().expect_err("out of bounds").to_string();
            assert!(e.contains(flag), "{e}");
        }
    }

    #[test]
    fn workers_get_one_connection_per_sixty_four() {
        assert_eq!(load(1000, 1, None).connection_count(), 1);
        assert_eq!(load(1000, 64, None).connection_count(), 1);
        assert_eq!(load(1000, 65, None).connection_count(), 2);
        assert_eq!(load(100_000, 1024, None).connection_count(), 16);
        // No more workers (nor connections) than jobs.
        assert_eq!(load(3, 1024, None).connection_count(), 1);
        assert_eq!(load(3, 1024, Some(8)).connection_count(), 3);
        assert_eq!(load(1000, 32, Some(4)).connection_count(), 4);
    }

    #[test]
    fn the_issuer_stops_at_the_count_or_the_duration() {
        let now = Instant::now();
        let i = Issuer::new(3, now, None);
        assert_eq!((0..10).filter(|_| i.take()).count(), 3);
        let i = Issuer::new(1000, now, Some(Duration::ZERO));
        assert!(!i.take(), "no job is issued once the duration has passed");
        let i = Issuer::new(1000, now, Some(Duration::from_secs(3600)));
        assert_eq!((0..10).filter(|_| i.take()).count(), 10);
    }

    #[test]
    fn refused_requests_pause_by_retry_after_at_most_a_second() {
        let api = |status, retry_after| ClientError::Api {
            status,
            code: "x".into(),
            message: "x".into(),
            retry_after,
        };
        assert_eq!(
            pause_after(&api(StatusCode::TOO_MANY_REQUESTS, Some(30))),
            Duration::from_secs(1)
        );
        assert_eq!(
            pause_after(&api(StatusCode::TOO_MANY_REQUESTS, Some(0))),
            Duration::ZERO
        );
        assert_eq!(
            pause_after(&api(StatusCode::INTERNAL_SERVER_ERROR, None)),
            Duration::from_millis(50)
        );
    }
}
