//! Job routes: `POST /v1/jobs` (and the seed-compatible `POST /jobs`), `GET /v1/jobs`,
//! `GET /v1/jobs/{id}`, its attempts, `cancel`, the long-poll `wait`, the `logs` stream and
//! `POST /v1/jobs/run` (submit and wait in one request).

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flux_core::auth::Permission;
use flux_core::jobs::JobFilter;
use flux_core::model::{
    Job, JobKind, JobStatus, StoredChunk, SubmitJob, attempt_id, now_ms, valid_ident,
};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::futures::OwnedNotified;

use super::MAX_WAIT;
use super::extract::{ApiJson, ApiQuery, Caller, Ctx, idempotency_header};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::waiters::{Interest, JobWatch};

pub(super) async fn submit_job(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<SubmitJob>,
) -> ApiResult<Response> {
    caller.require(Permission::SubmitJobs)?;
    merge_idempotency_key(&headers, &mut req)?;
    // A replay of an accepted submission is answered with its job, whatever the quota says now.
    let replay = is_replay(&st, caller.tenant(), req.idempotency_key.as_deref()).await?;
    // A fan-out is admitted as the number of jobs it makes, to the agents it was counted on.
    let targets = if req.fan_out {
        Some(
            st.jobs
                .fan_out_targets(caller.tenant(), &req.selector)
                .await?,
        )
    } else {
        None
    };
    if !replay {
        let n = targets.as_ref().map_or(1, |t| t.len() as u64);
        admit(&st, caller.tenant(), n).await?;
    }
    // A tenant's `rollout_above`: a fan-out over more agents runs as a rollout with safe
    // defaults, so that a slip of the finger cannot hit the whole fleet at once.
    if let Some(t) = &targets
        && let Some(above) = st.quota(caller.tenant()).await?.rollout_above
        && t.len() as u64 > above
    {
        let spec = flux_core::rollout::RolloutSpec {
            command: req.command.clone(),
            argv: req.argv.clone(),
            selector: req.selector.clone(),
            env: req.env.clone(),
            workdir: req.workdir.clone(),
            timeout_secs: req.timeout_secs,
            max_concurrency: Some(flux_core::rollout::LimitSpec::Text("10%".into())),
            max_errors: Some(flux_core::rollout::LimitSpec::Count(0)),
            canary: Some(1),
            ..Default::default()
        };
        if !req.secret_env.is_empty() || req.idempotency_key.is_some() {
            return Err(ApiError::invalid(format!(
                "fan_out: this tenant runs a fan-out over more than {above} agents as a rollout, \
                 which takes no secret_env; give rollout options instead"
            )));
        }
        let r = flux_core::rollout::Rollouts::new(st.store.clone(), st.jobs.clone())
            .create(caller.tenant(), &caller.0.sub, spec, now_ms(), None)
            .await?;
        let warning = format!(
            "the selector matches {} agents, more than this tenant's rollout_above ({above}): \
             running as rollout {} ({} at once, no error tolerated, 1 canary)",
            t.len(),
            r.rollout_id,
            r.params.max_concurrency
        );
        return Ok((
            StatusCode::CREATED,
            Json(json!({"rollout": r, "warnings": [warning]})),
        )
            .into_response());
    }
    if let Some(targets) = targets {
        let (group, jobs) = st
            .jobs
            .submit_fan_out(caller.tenant(), &caller.0.sub, &req, targets, now_ms())
            .await?;
        st.metrics.jobs_submitted.inc_by(jobs.len() as u64);
        st.wake_scheduler();
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"group": group, "jobs": jobs})),
        )
            .into_response());
    }
    let (status, job, warnings) = submit_one(&st, &caller, req, replay).await?;
    Ok((status, Json(with_warnings(&job, &warnings)?)).into_response())
}

/// Submits one job (admitted already, or a replay): 202 with the job, or 200 with the job a
/// replayed idempotency key names, and what the caller should know about its target.
async fn submit_one(
    st: &AppState,
    caller: &Caller,
    req: SubmitJob,
    replay: bool,
) -> ApiResult<(StatusCode, Job, Vec<String>)> {
    let (submitted, ()) = submit_one_then(st, caller, req, replay, |_| ()).await?;
    Ok(submitted)
}

/// [`submit_one`], calling `before` with the new job before it is committed
/// ([`flux_core::jobs::Jobs::submit_then`]).
async fn submit_one_then<T>(
    st: &AppState,
    caller: &Caller,
    req: SubmitJob,
    replay: bool,
    before: impl FnOnce(&Job) -> T,
) -> ApiResult<((StatusCode, Job, Vec<String>), T)> {
    // Nobody waits in silence: a pin to an unknown node is refused, a pin to a dead agent or a
    // selector no agent matches is said in `warnings`.
    let warnings = if replay {
        Vec::new()
    } else {
        st.jobs.check_target(caller.tenant(), &req).await?
    };
    let ((job, created), seen) = st
        .jobs
        .submit_then(caller.tenant(), &caller.0.sub, req, now_ms(), before)
        .await?;
    if created {
        st.metrics.jobs_submitted.inc();
        st.wake_scheduler();
    }
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok(((status, job, warnings), seen))
}

/// A job's reply: the job, with `warnings` when there are some.
fn with_warnings(job: &Job, warnings: &[String]) -> ApiResult<serde_json::Value> {
    let mut body = serde_json::to_value(job).map_err(|e| ApiError::invalid(e.to_string()))?;
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    Ok(body)
}

/// `POST /v1/jobs/run`: submits one job (the body of `POST /v1/jobs`) and waits for its end, in
/// one request where a client would otherwise make two. The status (202, or 200 for a replay)
/// and the job's `Location` go as soon as the job is committed, so a client that loses the
/// connection during the wait still knows its job; the body is the job once it has ended, or
/// as it is at the deadline (`timeout_secs`, as on `GET /v1/jobs/{id}/wait`). A fan-out is
/// refused: it is many jobs, submitted on `POST /v1/jobs`.
pub(super) async fn run_job(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<WaitQuery>,
    ApiJson(mut req): ApiJson<SubmitJob>,
) -> ApiResult<Response> {
    caller.require(Permission::SubmitJobs)?;
    caller.require(Permission::ReadJobs)?;
    let deadline = q.deadline();
    if req.fan_out {
        return Err(ApiError::invalid(
            "fan_out: POST /v1/jobs/run waits for one job; submit a fan-out on POST /v1/jobs",
        ));
    }
    merge_idempotency_key(&headers, &mut req)?;
    let replay = is_replay(&st, caller.tenant(), req.idempotency_key.as_deref()).await?;
    if !replay {
        admit(&st, caller.tenant(), 1).await?;
    }
    let tenant = caller.tenant().to_string();
    // The wait is registered before the job is committed: a new job needs no read to learn
    // that it has not ended yet, and its end cannot come unseen.
    let ((status, job, warnings), waiting) = submit_one_then(&st, &caller, req, replay, |new| {
        let watch = st.job_waiters.watch(&tenant, &new.job_id, Interest::End);
        let mut changed = Box::pin(watch.notify().notified_owned());
        changed.as_mut().enable();
        (new.job_id.clone(), watch, changed)
    })
    .await?;
    let location = format!("/v1/jobs/{}", job.job_id);
    // A wait that fails (the store) ends the body with an error: the client has the job's
    // `Location` and asks again.
    let ended = async move {
        let (id, watch, changed) = waiting;
        let job = if job.status.is_terminal() {
            Ok(job)
        } else if status == StatusCode::ACCEPTED && id == job.job_id {
            // The job this request created (not an earlier one its idempotency key named).
            until_end_watched(&st, &tenant, &id, deadline, watch, Some(changed)).await
        } else {
            drop((watch, changed));
            until_end(&st, &tenant, &job.job_id, deadline).await
        };
        let body = job
            .and_then(|j| with_warnings(&j, &warnings))
            .map_err(|e| {
                tracing::debug!(error = %e.message, "a job run's wait ends without its job");
                std::io::Error::other(e.message)
            })?;
        Ok::<_, std::io::Error>(Bytes::from(body.to_string()))
    };
    let body = Body::new(super::agent_protocol::OneFrame::new(Body::from_stream(
        futures::stream::once(ended),
    )));
    Ok((
        status,
        [
            (header::LOCATION, location),
            (header::CONTENT_TYPE, "application/json".to_string()),
        ],
        body,
    )
        .into_response())
}

/// Takes the `X-Flux-Idempotency-Key` header into the request; it must agree with the body's
/// `idempotency_key` when both are given.
fn merge_idempotency_key(headers: &HeaderMap, req: &mut SubmitJob) -> ApiResult<()> {
    if let Some(h) = idempotency_header(headers)? {
        match &req.idempotency_key {
            Some(k) if *k != h => {
                return Err(ApiError::invalid(
                    "X-Flux-Idempotency-Key and idempotency_key differ",
                ));
            }
            _ => req.idempotency_key = Some(h),
        }
    }
    Ok(())
}

/// Whether a submission with idempotency key `key` was accepted before in `tenant`.
async fn is_replay(st: &AppState, tenant: &str, key: Option<&str>) -> ApiResult<bool> {
    Ok(match key {
        Some(k) if valid_ident(k) => st
            .store
            .get(&flux_core::store::Key::new(
                tenant,
                flux_core::keys::idempotency(k),
            )?)
            .await?
            .is_some(),
        _ => false,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListJobsQuery {
    status: Option<String>,
    node_id: Option<String>,
    group: Option<String>,
    /// `user`, `reconciler` or `all` (the default).
    kind: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /v1/jobs`: one page of the tenant's jobs, newest first, read from the listing indexes
/// (`flux_core::jobs::listing`), so it costs about `limit` reads whatever the history.
pub(super) async fn list_jobs(
    Ctx { st, caller }: Ctx,
    ApiQuery(q): ApiQuery<ListJobsQuery>,
) -> ApiResult<Response> {
    use flux_core::jobs::listing::{DEFAULT_LIMIT, MAX_LIMIT, decode_cursor};
    caller.require(Permission::ReadJobs)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(JobStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("unknown status {}", flux_core::state::shown(s)))
        })?),
    };
    let kind = match q.kind.as_deref() {
        None | Some("all") => None,
        Some(k) => Some(JobKind::parse(k).ok_or_else(|| {
            ApiError::bad_request(format!(
                "unknown kind {}; expected user, reconciler, rollout, schedule or all",
                flux_core::state::shown(k)
            ))
        })?),
    };
    for (field, v) in [("node_id", &q.node_id), ("group", &q.group)] {
        if v.as_deref().is_some_and(|v| !valid_ident(v)) {
            return Err(ApiError::invalid(format!(
                "{field} must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
            )));
        }
    }
    let limit = super::extract::list_limit(q.limit, DEFAULT_LIMIT, MAX_LIMIT)?;
    let filter = JobFilter {
        status,
        node_id: q.node_id,
        group: q.group,
        kind,
        limit: None,
    };
    if let Some(c) = &q.cursor {
        decode_cursor(caller.tenant(), &filter, c)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    let page = st
        .jobs
        .list_page(caller.tenant(), &filter, q.cursor.as_deref(), limit)
        .await?;
    Ok(super::reply::page(page.jobs, page.next_cursor))
}

pub(super) async fn get_job(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    caller.require(Permission::ReadJobs)?;
    Ok(Json(st.jobs.get(caller.tenant(), &id).await?))
}

pub(super) async fn job_attempts(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadJobs)?;
    Ok(Json(st.jobs.attempts(caller.tenant(), &id).await?).into_response())
}

pub(super) async fn cancel_job(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    caller.require(Permission::CancelJobs)?;
    let now = now_ms();
    let job = st.jobs.cancel(caller.tenant(), &id, now).await?;
    // Counted only by the call that ended it (a queued job ends at once, stamped `now`).
    if job.status.is_terminal() && job.finished_at == Some(now) {
        job_finished(&st, &job);
    }
    Ok(Json(job))
}

/// Counts a job that reached a final status, with how long it waited to start.
pub(super) fn job_finished(st: &AppState, job: &Job) {
    if !job.status.is_terminal() {
        return;
    }
    st.metrics
        .jobs_finished
        .with_label_values(&[job.status.as_str()])
        .inc();
    if let Some(started) = job.started_at {
        st.metrics
            .dispatch_latency
            .observe(started.saturating_sub(job.created_at) as f64 / 1000.0);
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    /// How long to wait for the job's end: 30 s unless given, at most [`MAX_WAIT`].
    timeout_secs: Option<u64>,
}

impl WaitQuery {
    fn deadline(&self) -> tokio::time::Instant {
        let wait = Duration::from_secs(self.timeout_secs.unwrap_or(30)).min(MAX_WAIT);
        tokio::time::Instant::now() + wait
    }
}

pub(super) async fn wait_job(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<Job>> {
    caller.require(Permission::ReadJobs)?;
    let deadline = q.deadline();
    Ok(Json(until_end(&st, caller.tenant(), &id, deadline).await?))
}

/// Job `id` of `tenant` once it has ended, or as it is at `deadline`.
async fn until_end(
    st: &AppState,
    tenant: &str,
    id: &str,
    deadline: tokio::time::Instant,
) -> ApiResult<Job> {
    // Woken only when this job ends (or on a resync): nothing else changes what it returns.
    let watch = st.job_waiters.watch(tenant, id, Interest::End);
    until_end_watched(st, tenant, id, deadline, watch, None).await
}

/// [`until_end`] on a wait registered already (`watch`). `unended`: a wake-up enabled while
/// the job was known not to have ended (before its creation was committed), so the first read
/// is not needed.
async fn until_end_watched(
    st: &AppState,
    tenant: &str,
    id: &str,
    deadline: tokio::time::Instant,
    watch: JobWatch,
    mut unended: Option<Pin<Box<OwnedNotified>>>,
) -> ApiResult<Job> {
    let notify = watch.notify();
    loop {
        let changed = match unended.take() {
            Some(changed) => changed,
            None => {
                // Enabled before the read, so a change committed after it is not missed.
                let mut changed = Box::pin(notify.clone().notified_owned());
                changed.as_mut().enable();
                let job = st.jobs.get(tenant, id).await?;
                if job.status.is_terminal() {
                    return Ok(job);
                }
                changed
            }
        };
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Ok(st.jobs.get(tenant, id).await?);
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    follow: Option<bool>,
    /// `text` (default) or `jsonl` (one `{"seq","stream","data"}` object per line).
    format: Option<String>,
}

/// Marker appended to output when the cap dropped bytes.
pub fn truncation_marker(dropped: u64) -> String {
    format!("\n[fluxforge: output truncated, {dropped} bytes not stored]\n")
}

/// How often an open follow checks that its token is still unrevoked (from the node's memory
/// of revocations, so the check costs no store read), so that a revoked token's stream ends
/// within about a second, like its requests.
pub const FOLLOW_RECHECK: Duration = Duration::from_secs(1);

/// Why an open follow ends before its job does.
#[derive(Debug, PartialEq, Eq)]
pub enum FollowEnd {
    /// The caller's token expired.
    Expired,
    /// The caller's token was revoked.
    Revoked,
    /// The follow lasted its longest allowed time (`--max-follow`); the client may reconnect.
    TimeLimit(Duration),
}

impl FollowEnd {
    /// The final line's text.
    pub fn message(&self) -> String {
        match self {
            FollowEnd::Expired => "stream ended: the token has expired".into(),
            FollowEnd::Revoked => "stream ended: the token has been revoked".into(),
            FollowEnd::TimeLimit(max) => format!(
                "stream ended: a follow lasts at most {}s; reconnect to continue",
                max.as_secs()
            ),
        }
    }
}

/// Whether a follow may go on: its token expires at `exp` (seconds), `revoked` is the last
/// revocation check, and it has run for `elapsed` of at most `max`. Expiry is judged like a
/// new request's (`exp` equal to now is expired).
pub fn follow_verdict(
    now_secs: u64,
    exp: u64,
    revoked: bool,
    elapsed: Duration,
    max: Duration,
) -> Option<FollowEnd> {
    if revoked {
        Some(FollowEnd::Revoked)
    } else if exp <= now_secs {
        Some(FollowEnd::Expired)
    } else if elapsed >= max {
        Some(FollowEnd::TimeLimit(max))
    } else {
        None
    }
}

/// What an open follow checks again while it streams: its caller's token (expiry, and
/// revocation at most every [`FOLLOW_RECHECK`]) and its own time limit.
pub(super) struct FollowGuard {
    jti: String,
    exp: u64,
    started: tokio::time::Instant,
    max: Duration,
    /// When revocation is next read.
    next_recheck: tokio::time::Instant,
}

impl FollowGuard {
    /// For a follow that starts now and lasts at most `max`; the request itself was just
    /// checked.
    pub(super) fn new(caller: &Caller, max: Duration) -> FollowGuard {
        let now = tokio::time::Instant::now();
        FollowGuard {
            jti: caller.0.jti.clone(),
            exp: caller.0.exp,
            started: now,
            max,
            next_recheck: now + FOLLOW_RECHECK,
        }
    }

    /// When revocation is next read.
    pub(super) fn next_recheck(&self) -> tokio::time::Instant {
        self.next_recheck
    }

    /// When the time limit ends the follow.
    pub(super) fn time_limit(&self) -> tokio::time::Instant {
        self.started + self.max
    }

    /// Why the follow must end now, if it must ([`follow_verdict`]); an error when the
    /// revocation could not be read.
    pub(super) async fn check(
        &mut self,
        st: &AppState,
        tenant: &str,
    ) -> Result<Option<FollowEnd>, flux_core::auth::AuthError> {
        let now = tokio::time::Instant::now();
        let mut revoked = false;
        if now >= self.next_recheck {
            self.next_recheck = now + FOLLOW_RECHECK;
            revoked = st.is_revoked(tenant, &self.jti).await?;
        }
        Ok(follow_verdict(
            now_ms() / 1000,
            self.exp,
            revoked,
            now - self.started,
            self.max,
        ))
    }
}

pub(super) struct LogCursor {
    st: Arc<AppState>,
    tenant: String,
    job_id: String,
    follow: bool,
    jsonl: bool,
    attempt: Option<u32>,
    next_seq: u64,
    /// Woken by changes to this job (its record, attempts and output) or a resync.
    watch: JobWatch,
    done: bool,
    /// The follower's token: expiry and revocation are checked again while streaming.
    guard: FollowGuard,
}

impl LogCursor {
    fn line(&self, chunk: &StoredChunk) -> Bytes {
        if self.jsonl {
            let mut s = serde_json::to_string(chunk).expect("chunk serializes");
            s.push('\n');
            Bytes::from(s)
        } else {
            Bytes::from(chunk.data.clone())
        }
    }

    fn note(&self, text: String) -> Bytes {
        if self.jsonl {
            let mut s = json!({"note": text.trim()}).to_string();
            s.push('\n');
            Bytes::from(s)
        } else {
            Bytes::from(text)
        }
    }

    /// The final line of a follow that ends before its job.
    fn end_line(&self, end: &FollowEnd) -> Bytes {
        let text = end.message();
        if !self.jsonl {
            return Bytes::from(format!("\n[fluxforge: {text}]\n"));
        }
        let mut s = match end {
            FollowEnd::Expired | FollowEnd::Revoked => {
                json!({"error": {"code": "unauthorized", "message": text}})
            }
            FollowEnd::TimeLimit(_) => json!({"note": text, "reconnect": true}),
        }
        .to_string();
        s.push('\n');
        Bytes::from(s)
    }

    /// For a follow: why it must end now, if it must. Expiry and the time limit are checked
    /// on every call; revocation at most every [`FOLLOW_RECHECK`]. A failed revocation check
    /// ends the stream too.
    async fn must_end(&mut self) -> Option<Bytes> {
        if !self.follow {
            return None;
        }
        let end = match self.guard.check(&self.st, &self.tenant).await {
            Ok(end) => end?,
            Err(e) => {
                self.done = true;
                return Some(self.note(format!("\n[fluxforge: stream ended: {e}]\n")));
            }
        };
        self.done = true;
        Some(self.end_line(&end))
    }

    /// Next piece of the stream, or `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        let idle_deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            if self.done {
                return None;
            }
            if let Some(end) = self.must_end().await {
                return Some(end);
            }
            // Registered before the reads, so a change committed after them is not missed.
            let notify = self.watch.notify();
            let changed = notify.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let job = match self.st.jobs.get(&self.tenant, &self.job_id).await {
                Ok(j) => j,
                Err(e) => {
                    self.done = true;
                    return Some(self.note(format!("\n[fluxforge: {e}]\n")));
                }
            };
            let mut out = Vec::new();
            if job.attempts > 0 {
                if self.attempt != Some(job.attempts) {
                    if self.attempt.is_some() {
                        out.push(self.note(format!(
                            "\n[fluxforge: attempt {} started; output below is from it]\n",
                            job.attempts
                        )));
                    }
                    self.attempt = Some(job.attempts);
                    self.next_seq = 0;
                }
                let att = attempt_id(&job.job_id, job.attempts);
                match self.st.jobs.output(&self.tenant, &att, self.next_seq).await {
                    Ok(chunks) => {
                        for c in &chunks {
                            out.push(self.line(c));
                            self.next_seq = c.seq + 1;
                        }
                    }
                    Err(e) => {
                        self.done = true;
                        out.push(self.note(format!("\n[fluxforge: {e}]\n")));
                    }
                }
            }
            if job.status.is_terminal() || !self.follow {
                self.done = true;
                if job.attempts > 0
                    && let Ok(attempts) = self.st.jobs.attempts(&self.tenant, &self.job_id).await
                    && let Some(a) = attempts.last()
                    && a.output_dropped > 0
                {
                    out.push(self.note(truncation_marker(a.output_dropped)));
                }
            }
            if !out.is_empty() {
                return Some(out.concat().into());
            }
            if self.done {
                return None;
            }
            loop {
                // Wake for the next token check and the time limit too, not only for changes.
                let wake_at = idle_deadline
                    .min(self.guard.next_recheck())
                    .min(self.guard.time_limit());
                let woke = tokio::time::timeout_at(wake_at, changed.as_mut())
                    .await
                    .is_ok();
                if let Some(end) = self.must_end().await {
                    return Some(end);
                }
                if woke {
                    break;
                }
                if tokio::time::Instant::now() >= idle_deadline {
                    // Keep the connection alive for proxies; the client keeps following.
                    return Some(Bytes::new());
                }
            }
        }
    }
}

pub(super) async fn job_logs(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadJobs)?;
    let jsonl = match q.format.as_deref() {
        None | Some("text") => false,
        Some("jsonl") => true,
        Some(other) => return Err(ApiError::bad_request(format!("unknown format {other:?}"))),
    };
    // 404 before streaming starts.
    st.jobs.get(caller.tenant(), &id).await?;
    let cursor = LogCursor {
        watch: st
            .job_waiters
            .watch(caller.tenant(), &id, Interest::Everything),
        st: st.clone(),
        tenant: caller.tenant().to_string(),
        job_id: id,
        follow: q.follow.unwrap_or(false),
        jsonl,
        attempt: None,
        next_seq: 0,
        done: false,
        guard: FollowGuard::new(&caller, st.max_follow),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        c.next().await.map(|b| (Ok::<_, Infallible>(b), c))
    });
    let ctype = if jsonl {
        "application/x-ndjson"
    } else {
        "text/plain; charset=utf-8"
    };
    Ok(([(header::CONTENT_TYPE, ctype)], Body::from_stream(stream)).into_response())
}

/// Admission for `n` new jobs (a fan-out submits several): free space under the embedded store
/// (507 below `--min-free-disk`), a collection backlog (429 beyond `--gc-max-lag`), the tenant's
/// quota (cached) and, when it bounds queued jobs,
/// its queue depth, judged by `flux_core::quota::admit`. Refused with 429 and `Retry-After`;
/// nothing is written.
async fn admit(st: &AppState, tenant: &str, n: u64) -> ApiResult<()> {
    admit_room(st, tenant).await?;
    let q = st.quota(tenant).await?;
    let queued = match q.max_queued {
        Some(_) => st.jobs.queue_depth(tenant).await? as u64,
        None => 0,
    };
    flux_core::quota::admit(&st.rates, tenant, &q, queued, n, Instant::now())?;
    Ok(())
}

/// The part of admission that does not count jobs, shared by everything that makes new work
/// (submissions, schedule triggers, new rollouts): free space (507 below `--min-free-disk`)
/// and the tenant's collector (429 `collection_behind` beyond `--gc-max-lag`).
pub(super) async fn admit_room(st: &AppState, tenant: &str) -> ApiResult<()> {
    admit_disk(st)?;
    admit_backlog(st, tenant).await
}

/// The free-space part of admission: 507 below `--min-free-disk` under the embedded store.
fn admit_disk(st: &AppState) -> ApiResult<()> {
    if let Some(why) = st.disk.as_ref().and_then(|d| d.refusal()) {
        st.metrics.disk_refusals.inc();
        return Err(ApiError::new(
            axum::http::StatusCode::INSUFFICIENT_STORAGE,
            "insufficient_storage",
            why,
        )
        .retry_after(5));
    }
    Ok(())
}

/// The collection part of admission: 429 while the tenant's collector has been behind for
/// longer than `--gc-max-lag` (its finished jobs pile up faster than they are deleted).
async fn admit_backlog(st: &AppState, tenant: &str) -> ApiResult<()> {
    if st.gc_max_lag.is_none() {
        return Ok(());
    }
    let since = st.gc_behind_since(tenant).await?;
    if let Some(b) = flux_core::retention::backlog(since, now_ms(), st.gc_max_lag) {
        st.metrics.gc_backlog_refusals.inc();
        return Err(ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "collection_behind",
            b.to_string(),
        )
        .retry_after(5));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_follow_goes_on_while_its_token_is_valid_and_its_time_is_not_up() {
        assert_eq!(follow_verdict(100, 101, false, Duration::ZERO, HOUR), None);
        assert_eq!(
            follow_verdict(100, 101, false, HOUR - Duration::from_millis(1), HOUR),
            None
        );
    }

    #[test]
    fn a_follow_ends_on_revocation_expiry_or_its_time_limit() {
        assert_eq!(
            follow_verdict(100, 500, true, Duration::ZERO, HOUR),
            Some(FollowEnd::Revoked)
        );
        assert_eq!(
            follow_verdict(100, 100, false, Duration::ZERO, HOUR),
            Some(FollowEnd::Expired)
        );
        assert_eq!(
            follow_verdict(100, 99, false, Duration::ZERO, HOUR),
            Some(FollowEnd::Expired)
        );
        assert_eq!(
            follow_verdict(100, 500, false, HOUR, HOUR),
            Some(FollowEnd::TimeLimit(HOUR))
        );
        assert!(FollowEnd::TimeLimit(HOUR).message().contains("reconnect"));
        assert!(FollowEnd::Revoked.message().contains("revoked"));
        assert!(FollowEnd::Expired.message().contains("expired"));
    }
}
