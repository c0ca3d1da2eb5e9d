//! The workload of a chaos run: jobs submitted at a steady rate through any node (each retried
//! with its idempotency key until acknowledged), the desired state every agent must keep (a
//! marker file), and, after healing, the wait until every acknowledged job has finished and
//! every target was repaired ([`settle`]).
//!
//! Every job appends its attempt id to `runs/<job id>`, so the checker can compare the work
//! done on agents with what the store holds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use flux_core::chaos::TargetSeen;
use flux_core::client::{ApiClient, ClientError, erased};
use flux_core::model::{Attempt, Job, SubmitJob};
use flux_core::state::StateView;
use flux_core::state::{StateSpec, Targets};
use futures::StreamExt;
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use super::{STATE, SUBMIT_PATIENCE};

/// The workload's jobs: each appends its attempt id to `runs/<job id>`.
pub(super) fn job_command(work: &Path) -> String {
    format!(
        "echo \"$FLUX_ATTEMPT_ID\" >> '{}/'\"$FLUX_JOB_ID\"",
        work.join("runs").display()
    )
}

/// Submits jobs at `rate` per second until `stop`; returns the acknowledged ids and the
/// number of submissions never acknowledged.
pub(super) async fn submit_jobs(
    api: Arc<ApiClient>,
    command: String,
    seed: u64,
    rate: u32,
    stop: CancellationToken,
) -> (Vec<String>, usize, usize) {
    let acked = Arc::new(Mutex::new(Vec::new()));
    let lost = Arc::new(Mutex::new(0usize));
    let sent = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = 4u32;
    let every = Duration::from_secs_f64(workers as f64 / rate.max(1) as f64);
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (api, command, stop) = (api.clone(), command.clone(), stop.clone());
        let (acked, lost, sent) = (acked.clone(), lost.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // After a stall, go on at the same pace rather than catching up in a burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n = 0u64;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                n += 1;
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let req = SubmitJob {
                    command: Some(command.clone()),
                    max_attempts: Some(10),
                    timeout_secs: Some(30),
                    idempotency_key: Some(format!("chaos-{seed:x}-{w}-{n}")),
                    ..SubmitJob::default()
                };
                match submit_one(&api, &req).await {
                    Some(id) => acked.lock().expect("acked").push(id),
                    None => *lost.lock().expect("lost") += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("acked"));
    let lost = *lost.lock().expect("lost");
    (acked, lost, sent.load(std::sync::atomic::Ordering::Relaxed))
}

/// One submission, retried with the same idempotency key through any node until acknowledged.
async fn submit_one(api: &ApiClient, req: &SubmitJob) -> Option<String> {
    let deadline = Instant::now() + SUBMIT_PATIENCE;
    let mut delay = Duration::from_millis(50);
    while Instant::now() < deadline {
        match api
            .call::<Job>(
                Method::POST,
                "/v1/jobs",
                Some(&erased::Body(req)),
                Duration::from_secs(3),
            )
            .await
        {
            Ok(j) => return Some(j.job_id),
            Err(ClientError::Api { status, .. })
                if status.is_client_error()
                    && status != StatusCode::TOO_MANY_REQUESTS
                    && status != StatusCode::REQUEST_TIMEOUT =>
            {
                // Refused for good (the workload is wrong): nothing was created.
                return None;
            }
            Err(_) => {
                // A frozen node holds the request until the timeout: try the next one.
                api.rotate();
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        }
    }
    None
}

/// Repairs of the run's state at once (its rollout table), judged by `state_repairs_bounded`.
pub(super) const STATE_REPAIRS_AT_ONCE: u32 = 2;

/// Declares the run's desired state over the labelled agents: its apply touches the agent's
/// mark and records its start and end under `work/repairs/<node>`; its rollout table bounds
/// the repairs at once (and tolerates every failure the faults cause).
pub(super) async fn declare_state(api: &ApiClient, work: &Path) -> Result<()> {
    let marks = work.join("marks");
    let repairs = work.join("repairs");
    let spec = StateSpec {
        name: STATE.into(),
        targets: Targets {
            agents: Vec::new(),
            labels: flux_core::selector::Selector::labels([("chaos", "1")]),
        },
        check: format!("test -f '{}/'\"$FLUX_NODE_ID\"", marks.display()),
        apply: format!(
            "mkdir -p '{0}' '{1}' && f='{1}/'\"$FLUX_NODE_ID\" && echo start $(date +%s%N) >> \"$f\" && touch '{0}/'\"$FLUX_NODE_ID\" && sleep 0.3 && echo end $(date +%s%N) >> \"$f\"",
            marks.display(),
            repairs.display()
        ),
        interval_secs: 1,
        timeout_secs: 10,
        env: BTreeMap::new(),
        desired_exit_code: 0,
        rollout: Some(flux_core::state::StateRollout {
            max_concurrency: Some(flux_core::rollout::LimitSpec::Count(
                STATE_REPAIRS_AT_ONCE.into(),
            )),
            max_errors: Some(flux_core::rollout::LimitSpec::Count(1_000_000)),
        }),
    };
    let _: StateView = declare(
        api,
        Method::PUT,
        &format!("/v1/states/{STATE}"),
        &spec,
        "declaring the run's desired state",
    )
    .await?;
    Ok(())
}

/// Sends one of the run's declarations, `body` to `path`; `what` says which in an error.
async fn declare<R: serde::de::DeserializeOwned>(
    api: &ApiClient,
    method: Method,
    path: &str,
    body: &(impl serde::Serialize + Sync),
    what: &'static str,
) -> Result<R> {
    api.call(
        method,
        path,
        Some(&erased::Body(body)),
        Duration::from_secs(10),
    )
    .await
    .context(what)
}

/// Name of the run's schedule: `true` on a labelled agent every second, through the faults.
pub(super) const SCHEDULE: &str = "chaos-tick";

/// Creates the run's schedule.
pub(super) async fn declare_schedule(api: &ApiClient) -> Result<()> {
    use flux_core::schedule::{JobSpec, Missed, Overlap, ScheduleSpec, What};
    let spec = ScheduleSpec {
        name: SCHEDULE.into(),
        cron: "* * * * * *".into(),
        tz: "UTC".into(),
        what: What::Job(JobSpec {
            command: Some("true".into()),
            selector: flux_core::selector::Selector::labels([("chaos", "1")]),
            timeout_secs: Some(10),
            ..JobSpec::default()
        }),
        overlap: Overlap::Allow,
        missed: Missed::Once,
        grace_secs: flux_core::schedule::DEFAULT_GRACE_SECS,
        jitter_secs: 0,
        paused: false,
    };
    let _: serde_json::Value = declare(
        api,
        Method::PUT,
        &format!("/v1/schedules/{SCHEDULE}"),
        &spec,
        "declaring the run's schedule",
    )
    .await?;
    // And one that starts a rollout every two seconds, through the same faults.
    let roll = ScheduleSpec {
        name: ROLLOUT_SCHEDULE.into(),
        cron: "*/2 * * * * *".into(),
        what: What::Rollout(flux_core::rollout::RolloutSpec {
            command: Some("true".into()),
            selector: flux_core::selector::Selector::labels([("chaos", "1")]),
            timeout_secs: Some(10),
            max_concurrency: Some(flux_core::rollout::LimitSpec::Text("100%".into())),
            max_errors: Some(flux_core::rollout::LimitSpec::Text("100%".into())),
            ..Default::default()
        }),
        ..spec
    };
    let _: serde_json::Value = declare(
        api,
        Method::PUT,
        &format!("/v1/schedules/{ROLLOUT_SCHEDULE}"),
        &roll,
        "declaring the run's rollout schedule",
    )
    .await?;
    Ok(())
}

/// Name of the run's rollout schedule: a rollout of `true` over the labelled agents every two
/// seconds.
pub(super) const ROLLOUT_SCHEDULE: &str = "chaos-roll";

/// Pauses the run's rollout schedule and reads what it did: its record and the group of every
/// rollout it started (the rollouts' own records, not the schedule's).
pub(super) async fn observe_rollout_schedule(
    api: &ApiClient,
) -> Result<flux_core::chaos::ScheduleSeen> {
    // Bounded: a run of an hour starts 1,800 rollouts.
    observe(
        api,
        ROLLOUT_SCHEDULE,
        "rollout schedule",
        2000,
        "/v1/rollouts?limit=1000",
        "decoding rollouts",
        |r: flux_core::rollout::RolloutSummary| {
            r.group.filter(|g| {
                flux_core::schedule::parse_slot_group(g).is_some_and(|(n, _)| n == ROLLOUT_SCHEDULE)
            })
        },
    )
    .await
}

/// Pauses the run's schedule and reads what it did: its record and every job it started.
pub(super) async fn observe_schedule(api: &ApiClient) -> Result<flux_core::chaos::ScheduleSeen> {
    // Bounded: a run of an hour fires 3,600 slots.
    observe(
        api,
        SCHEDULE,
        "schedule",
        1000,
        "/v1/jobs?kind=schedule&limit=1000",
        "decoding jobs",
        |j: Job| j.group,
    )
    .await
}

/// Pauses schedule `name` (the run's `what`, firing every `every_ms`) and reads what it did:
/// its record, and the groups `group_of` finds in the pages of `list` (at most 100 pages of
/// items decoded as `T`; `decoding` says what in an error).
async fn observe<T: serde::de::DeserializeOwned>(
    api: &ApiClient,
    name: &str,
    what: &str,
    every_ms: u64,
    list: &str,
    decoding: &'static str,
    group_of: impl Fn(T) -> Option<String>,
) -> Result<flux_core::chaos::ScheduleSeen> {
    let _: serde_json::Value = api
        .call(
            Method::POST,
            &format!("/v1/schedules/{name}/pause"),
            None,
            Duration::from_secs(10),
        )
        .await
        .with_context(|| format!("pausing the run's {what}"))?;
    let v: serde_json::Value = api.get(&format!("/v1/schedules/{name}")).await?;
    let mut groups = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = list.to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let resp = api
            .send(Method::GET, &path, None, Duration::from_secs(30))
            .await?;
        cursor = resp
            .headers()
            .get("x-flux-next-cursor")
            .and_then(|h| h.to_str().ok())
            .map(str::to_string);
        let page: Vec<T> = resp.json().await.context(decoding)?;
        groups.extend(page.into_iter().filter_map(&group_of));
        if cursor.is_none() {
            break;
        }
    }
    Ok(flux_core::chaos::ScheduleSeen {
        every_ms,
        job_groups: groups,
        fires: v["fires"].as_u64().unwrap_or(0),
        missed: v["missed"].as_u64().unwrap_or(0),
        last_slot: v["last_slot"].as_u64(),
    })
}

/// A job with its attempts; `None` when the store does not know it.
pub(super) type Seen = Option<(Job, Vec<Attempt>)>;

/// A job's status and attempts, `Ok(None)` when the store does not know it.
async fn job_state(api: &ApiClient, id: &str) -> Result<Seen, ClientError> {
    let job: Job = match api.get(&format!("/v1/jobs/{id}")).await {
        Ok(j) => j,
        Err(ClientError::Api { status, .. }) if status == StatusCode::NOT_FOUND => return Ok(None),
        Err(e) => return Err(e),
    };
    let attempts: Vec<Attempt> = api.get(&format!("/v1/jobs/{id}/attempts")).await?;
    Ok(Some((job, attempts)))
}

/// Waits until every acknowledged job has finished and every target was repaired after
/// `healed_at` (compliant, with its marker in `marks` made again), or `limit` passes; returns
/// what it last saw of the jobs and targets.
pub(super) async fn settle(
    api: &ApiClient,
    marks: &Path,
    acked: &[String],
    healed_at: u64,
    limit: Duration,
) -> (BTreeMap<String, Seen>, Vec<TargetSeen>) {
    let deadline = Instant::now() + limit;
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    let mut open: BTreeSet<String> = acked.iter().cloned().collect();
    let mut targets = Vec::new();
    loop {
        let checked: Vec<(String, Result<Seen, ClientError>)> =
            futures::stream::iter(open.iter().cloned())
                .map(|id| async move {
                    let r = job_state(api, &id).await;
                    (id, r)
                })
                .buffer_unordered(16)
                .collect()
                .await;
        for (id, r) in checked {
            if let Ok(v) = r {
                let done = v.as_ref().is_some_and(|(j, _)| j.status.is_terminal());
                seen.insert(id.clone(), v);
                if done {
                    open.remove(&id);
                }
            }
        }
        if let Ok(view) = api.get::<StateView>(&format!("/v1/states/{STATE}")).await {
            targets = view
                .status
                .iter()
                .map(|t| TargetSeen {
                    agent: t.agent.clone(),
                    status: t.status,
                    last_change: t.last_change,
                    marked: marks.join(&t.agent).exists(),
                })
                .collect();
        }
        let converged = !targets.is_empty()
            && targets.iter().all(|t| {
                t.status == flux_core::reconcile::TargetState::Compliant
                    && t.marked
                    && t.last_change.is_some_and(|at| at >= healed_at)
            });
        if (open.is_empty() && converged) || Instant::now() >= deadline {
            return (seen, targets);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Starts a rollout over every agent, one at a time, whose command writes its start and end
/// times under `work/rollout/<node>` (the side effects the rollout invariant is judged on).
pub(super) async fn start_rollout(
    api: &ApiClient,
    work: &Path,
    agents: &[String],
) -> Result<Option<String>> {
    if agents.is_empty() {
        return Ok(None);
    }
    let dir = work.join("rollout");
    std::fs::create_dir_all(&dir).context("creating the rollout's directory")?;
    let spec = flux_core::rollout::RolloutSpec {
        command: Some(format!(
            "f='{}/'\"$FLUX_NODE_ID\"; echo start $(date +%s%N) >> \"$f\"; sleep 1; echo end $(date +%s%N) >> \"$f\"",
            dir.display()
        )),
        nodes: agents.to_vec(),
        max_concurrency: Some(flux_core::rollout::LimitSpec::Count(1)),
        // Agents killed by the faults fail their target: that must not halt the run.
        max_errors: Some(flux_core::rollout::LimitSpec::Text("100%".into())),
        timeout_secs: Some(60),
        ..Default::default()
    };
    let r: flux_core::rollout::Rollout = api
        .post("/v1/rollouts", &spec)
        .await
        .context("creating the chaos rollout")?;
    Ok(Some(r.rollout_id))
}

/// The runs recorded under `dir`, one file per node of `start <ns>` and `end <ns>` lines.
fn read_runs(dir: &Path) -> Vec<flux_core::chaos::RolloutRun> {
    let mut runs = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let node = e.file_name().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            for line in text.lines() {
                let mut w = line.split_whitespace();
                let (Some(kind), Some(t)) = (w.next(), w.next().and_then(|t| t.parse().ok()))
                else {
                    continue;
                };
                match kind {
                    "start" => runs.push(flux_core::chaos::RolloutRun {
                        node_id: node.clone(),
                        started_ns: t,
                        ended_ns: None,
                    }),
                    _ => {
                        if let Some(r) = runs.iter_mut().rev().find(|r| r.node_id == node) {
                            r.ended_ns = Some(t);
                        }
                    }
                }
            }
        }
    }
    runs
}

/// The repairs of the run's state, as their side effects recorded them.
pub(super) fn observe_repairs(work: &Path, drifted: usize) -> flux_core::chaos::RepairsSeen {
    flux_core::chaos::RepairsSeen {
        max_concurrency: STATE_REPAIRS_AT_ONCE as usize,
        runs: read_runs(&work.join("repairs")),
        drifted,
    }
}

/// What became of the rollout once the faults are over: its record (waiting up to `patience`
/// for it to finish) and the runs its targets wrote.
pub(super) async fn observe_rollout(
    api: &ApiClient,
    work: &Path,
    id: &str,
    patience: Duration,
) -> flux_core::chaos::RolloutSeen {
    let deadline = Instant::now() + patience;
    let mut last: Option<flux_core::rollout::Rollout> = None;
    while Instant::now() < deadline {
        if let Ok(r) = api
            .get::<flux_core::rollout::Rollout>(&format!("/v1/rollouts/{id}"))
            .await
        {
            let done = r.status.is_finished();
            last = Some(r);
            if done {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let runs = read_runs(&work.join("rollout"));
    flux_core::chaos::RolloutSeen {
        rollout_id: id.to_string(),
        max_concurrency: last.as_ref().map_or(1, |r| r.params.max_concurrency),
        finished: last.as_ref().map(|r| r.status).filter(|s| s.is_finished()),
        targets: last
            .map(|r| {
                r.targets
                    .into_iter()
                    .map(|t| (t.node_id, t.state, t.finished_at))
                    .collect()
            })
            .unwrap_or_default(),
        runs,
    }
}

/// Name of the run's webhook and the event types it takes.
pub(super) const WEBHOOK: &str = "chaos-hook";
pub(super) const WEBHOOK_EVENTS: &str = "job.finished,rollout.*,schedule.fired";

/// Creates the run's webhook, pointed at the receiver on `port`.
pub(super) async fn declare_webhook(api: &ApiClient, port: u16, secret: &str) -> Result<()> {
    let body = serde_json::json!({
        "name": WEBHOOK,
        "url": format!("http://127.0.0.1:{port}/hook"),
        "events": WEBHOOK_EVENTS.split(',').collect::<Vec<_>>(),
        "secret": secret,
        "allow_http": true,
        "max_attempts": flux_core::webhooks::MAX_MAX_ATTEMPTS,
    });
    let _: serde_json::Value = declare(
        api,
        Method::POST,
        "/v1/webhooks",
        &body,
        "creating the run's webhook",
    )
    .await?;
    Ok(())
}

/// The events of the log the run's webhook takes (after its start), then, once its cursor has
/// passed the last of them (or `timeout`), what the receiver recorded.
pub(super) async fn observe_webhook(
    api: &ApiClient,
    receiver: &super::receiver::Receiver,
    timeout: Duration,
) -> Result<flux_core::chaos::WebhookSeen> {
    use flux_core::events::Position;
    let hook: serde_json::Value = api.get(&format!("/v1/webhooks/{WEBHOOK}")).await?;
    let start = hook["start"].as_str().unwrap_or("0").to_string();
    let resp = api
        .send(
            Method::GET,
            &format!("/v1/events?follow=false&type={WEBHOOK_EVENTS}&since={start}"),
            None,
            Duration::from_secs(120),
        )
        .await?;
    let bytes = resp.bytes().await.context("reading the event log")?;
    let mut expected = Vec::new();
    for m in flux_core::events::sse::Parser::new().feed(&bytes) {
        let Some(id) = m.id else { continue };
        let v: serde_json::Value = serde_json::from_str(&m.data).unwrap_or_default();
        expected.push((id, v["object"].as_str().unwrap_or_default().to_string()));
    }
    let last = expected
        .last()
        .and_then(|(id, _)| Position::parse(id).ok())
        .unwrap_or_default();
    let deadline = Instant::now() + timeout;
    loop {
        let v: serde_json::Value = api.get(&format!("/v1/webhooks/{WEBHOOK}")).await?;
        let at = v["delivered_to"]
            .as_str()
            .and_then(|s| Position::parse(s).ok())
            .unwrap_or_default();
        if at >= last || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(flux_core::chaos::WebhookSeen {
        expected,
        received: receiver.received(),
    })
}
