//! The HTTP API: routes, authentication, tenant scoping and the one JSON error shape.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flux_core::auth::{self, AuthError, Claims, Permission, Role};
use flux_core::jobs::{JobError, JobFilter};
use flux_core::model::{
    AttemptResult, Heartbeat, Job, JobStatus, OutputChunk, RegisterAgent, StoredChunk, SubmitJob,
    attempt_id, now_ms, valid_ident,
};
use flux_core::store::{Change, StoreError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::broadcast;

use crate::app::AppState;

/// Longest a long-poll (tasks, wait, logs idle) is held open.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// Every error the API returns: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", m)
    }
    pub fn invalid(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", m)
    }
    pub fn not_found(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", m)
    }
    pub fn forbidden(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", m)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            JobError::Invalid(m) => ApiError::invalid(m),
            JobError::Gone(m) => ApiError::new(StatusCode::GONE, "gone", m),
            JobError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            JobError::Store(s) => s.into(),
            JobError::Corrupt { .. } => {
                tracing::error!(error = %e, "corrupt object");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "corrupt object in store",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            StoreError::InvalidKey(m) | StoreError::InvalidTxn(m) => ApiError::invalid(m),
            other => {
                tracing::error!(error = %other, "store error");
                let mut err = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; retry",
                );
                err.retry_after = Some(1);
                err
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Store(s) => s.into(),
            AuthError::InvalidClaims(m) => ApiError::invalid(m),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// JSON body extractor whose rejections use the API error shape: 400 for syntax, 422 for
/// unknown fields and wrong types, 413 for oversized bodies, 415 without a JSON content type.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let ct = ct
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase();
                ct == "application/json"
                    || (ct.starts_with("application/") && ct.ends_with("+json"))
            });
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected a body with content type application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let status = rej.status();
            let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "payload_too_large"
            } else {
                "bad_request"
            };
            ApiError::new(status, code, rej.body_text())
        })?;
        // serde would also read a struct from an array of its fields in order: only objects.
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => {}
            Some(_) if serde_json::from_slice::<serde::de::IgnoredAny>(&bytes).is_ok() => {
                return Err(ApiError::invalid("the body must be a JSON object"));
            }
            Some(_) => return Err(ApiError::bad_request("the body is not valid JSON")),
            None => return Err(ApiError::bad_request("the body is empty")),
        }
        match Json::<T>::from_bytes(&bytes) {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => {
                let status = rej.status();
                let message = match &rej {
                    JsonRejection::JsonDataError(e) => std::error::Error::source(e)
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| e.body_text()),
                    other => other.body_text(),
                };
                let code = match status {
                    StatusCode::UNPROCESSABLE_ENTITY => "invalid",
                    _ => "bad_request",
                };
                Err(ApiError::new(status, code, message))
            }
        }
    }
}

/// Query extractor with the API error shape.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::bad_request(e.body_text()))
    }
}

/// The authenticated caller: verified, unrevoked token claims.
pub struct Caller(pub Claims);

impl Caller {
    pub fn require(&self, p: Permission) -> ApiResult<()> {
        if self.0.role.allows(p) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "role {} may not do this ({p:?})",
                self.0.role
            )))
        }
    }

    pub fn tenant(&self) -> &str {
        &self.0.tenant
    }

    /// The node id of an agent caller.
    pub fn node_id(&self) -> ApiResult<&str> {
        self.require(Permission::AgentProtocol)?;
        self.0
            .node_id
            .as_deref()
            .ok_or_else(|| ApiError::forbidden("agent token carries no node id"))
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or(AuthError::Missing)?
            .to_str()
            .map_err(|_| AuthError::Malformed("authorization header is not text".into()))?;
        let token = auth::bearer(value)?;
        let claims = state.auth.verify(token)?;
        if state.is_revoked(&claims.tenant, &claims.jti).await? {
            return Err(AuthError::Revoked.into());
        }
        Ok(Caller(claims))
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/jobs", post(submit_job))
        .route("/v1/jobs", post(submit_job).get(list_jobs))
        .route("/v1/jobs/{id}", get(get_job))
        .route("/v1/jobs/{id}/attempts", get(job_attempts))
        .route("/v1/jobs/{id}/logs", get(job_logs))
        .route("/v1/jobs/{id}/wait", get(wait_job))
        .route("/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/v1/agents", get(list_agents))
        .route("/v1/agents/{id}", get(get_agent))
        .route("/v1/tokens", post(create_token))
        .route("/v1/tokens/revoke", post(revoke_token))
        .route("/v1/whoami", get(whoami))
        .route("/v1/status", get(status))
        .route("/v1/agent/register", post(agent_register))
        .route("/v1/agent/heartbeat", post(agent_heartbeat))
        .route("/v1/agent/tasks", get(agent_tasks))
        .route("/v1/agent/attempts/{id}/start", post(attempt_start))
        .route("/v1/agent/attempts/{id}/output", post(attempt_output))
        .route("/v1/agent/attempts/{id}/result", post(attempt_result))
        .merge(crate::states_api::routes())
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(st): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    st.store.current_epoch().await?;
    Ok(Json(json!({"status": "ready"})))
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    if let Err(e) = crate::app::refresh_gauges(&st).await {
        // Still serve the process and leader metrics; the cluster gauges keep their last value.
        tracing::warn!(error = %e, "cannot refresh cluster gauges");
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        st.metrics.render(),
    )
        .into_response()
}

fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
    match headers.get("x-flux-idempotency-key") {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| ApiError::bad_request("X-Flux-Idempotency-Key is not text"))?;
            Ok(Some(s.to_string()))
        }
    }
}

async fn submit_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(mut req): ApiJson<SubmitJob>,
) -> ApiResult<Response> {
    caller.require(Permission::SubmitJobs)?;
    if let Some(h) = idempotency_header(&headers)? {
        match &req.idempotency_key {
            Some(k) if *k != h => {
                return Err(ApiError::invalid(
                    "X-Flux-Idempotency-Key and idempotency_key differ",
                ));
            }
            _ => req.idempotency_key = Some(h),
        }
    }
    // A replay of an accepted submission is answered with its job, whatever the quota says now.
    let replay = match &req.idempotency_key {
        Some(k) if valid_ident(k) => st
            .store
            .get(&flux_core::store::Key::new(
                caller.tenant(),
                flux_core::model::keys::idempotency(k),
            )?)
            .await?
            .is_some(),
        _ => false,
    };
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
        crate::tenants_api::admit_submission(&st, caller.tenant(), n).await?;
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
    let (job, created) = st
        .jobs
        .submit(caller.tenant(), &caller.0.sub, req, now_ms())
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
    Ok((status, Json(job)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListJobsQuery {
    status: Option<String>,
    node_id: Option<String>,
    group: Option<String>,
    limit: Option<usize>,
}

async fn list_jobs(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListJobsQuery>,
) -> ApiResult<Json<Vec<Job>>> {
    caller.require(Permission::ReadJobs)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(
            JobStatus::parse(s)
                .ok_or_else(|| ApiError::bad_request(format!("unknown status {s:?}")))?,
        ),
    };
    let filter = JobFilter {
        status,
        node_id: q.node_id,
        group: q.group,
        limit: Some(q.limit.unwrap_or(100).min(10_000)),
    };
    Ok(Json(st.jobs.list(caller.tenant(), &filter).await?))
}

async fn get_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    caller.require(Permission::ReadJobs)?;
    Ok(Json(st.jobs.get(caller.tenant(), &id).await?))
}

async fn job_attempts(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadJobs)?;
    Ok(Json(st.jobs.attempts(caller.tenant(), &id).await?).into_response())
}

async fn cancel_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
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
fn job_finished(st: &AppState, job: &Job) {
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
struct WaitQuery {
    timeout_secs: Option<u64>,
}

/// Waits until `changed` says a notice concerns us, or the deadline.
async fn wait_until_touched(
    rx: &mut broadcast::Receiver<Change>,
    deadline: tokio::time::Instant,
    mut concerns: impl FnMut(&Change) -> bool,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(Ok(c)) if concerns(&c) => return true,
            Ok(Ok(_)) => {}
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => {
                tokio::time::sleep_until(deadline).await;
                return false;
            }
        }
    }
}

async fn wait_job(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<WaitQuery>,
) -> ApiResult<Json<Job>> {
    caller.require(Permission::ReadJobs)?;
    let wait = Duration::from_secs(q.timeout_secs.unwrap_or(30)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let tenant = caller.tenant().to_string();
    let path = format!("jobs/{id}");
    let mut rx = st.store.subscribe();
    loop {
        let job = st.jobs.get(&tenant, &id).await?;
        if job.status.is_terminal() {
            return Ok(Json(job));
        }
        if !wait_until_touched(&mut rx, deadline, |c| c.touches(&tenant, &path)).await {
            return Ok(Json(st.jobs.get(&tenant, &id).await?));
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    follow: Option<bool>,
    /// `text` (default) or `jsonl` (one `{"seq","stream","data"}` object per line).
    format: Option<String>,
}

/// Marker appended to output when the cap dropped bytes.
pub fn truncation_marker(dropped: u64) -> String {
    format!("\n[fluxforge: output truncated, {dropped} bytes not stored]\n")
}

struct LogCursor {
    st: Arc<AppState>,
    tenant: String,
    job_id: String,
    follow: bool,
    jsonl: bool,
    attempt: Option<u32>,
    next_seq: u64,
    rx: broadcast::Receiver<Change>,
    done: bool,
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

    /// Next piece of the stream, or `None` at the end.
    async fn next(&mut self) -> Option<Bytes> {
        let idle_deadline = tokio::time::Instant::now() + MAX_WAIT;
        loop {
            if self.done {
                return None;
            }
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
            let (tenant, job_path) = (self.tenant.clone(), format!("jobs/{}", self.job_id));
            let out_prefix = format!("output/{}.", self.job_id);
            let woke = wait_until_touched(&mut self.rx, idle_deadline, |c| {
                c.touches(&tenant, &job_path) || c.touches(&tenant, &out_prefix)
            })
            .await;
            if !woke {
                // Keep the connection alive for proxies; the client keeps following.
                return Some(Bytes::new());
            }
        }
    }
}

async fn job_logs(
    State(st): State<Arc<AppState>>,
    caller: Caller,
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
        rx: st.store.subscribe(),
        st: st.clone(),
        tenant: caller.tenant().to_string(),
        job_id: id,
        follow: q.follow.unwrap_or(false),
        jsonl,
        attempt: None,
        next_seq: 0,
        done: false,
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

async fn list_agents(State(st): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    caller.require(Permission::ReadAgents)?;
    Ok(Json(st.jobs.agents(caller.tenant()).await?).into_response())
}

async fn get_agent(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadAgents)?;
    Ok(Json(st.jobs.agent(caller.tenant(), &id).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateToken {
    tenant: Option<String>,
    role: Role,
    ttl_secs: Option<u64>,
    node_id: Option<String>,
    subject: Option<String>,
}

#[derive(Serialize)]
struct TokenReply {
    token: String,
    claims: Claims,
}

/// Longest token lifetime accepted (one year).
const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

async fn create_token(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<TokenReply>)> {
    caller.require(Permission::ManageTokens)?;
    let tenant = req.tenant.unwrap_or_else(|| caller.tenant().to_string());
    if !caller.0.may_administer(&tenant) {
        return Err(ApiError::forbidden(format!(
            "only admins of tenant {:?} or of {tenant:?} may issue tokens for {tenant:?}",
            auth::CLUSTER_TENANT
        )));
    }
    if tenant.starts_with('_') {
        return Err(ApiError::invalid("tenant names may not start with '_'"));
    }
    flux_core::store::validate_tenant(&tenant).map_err(|e| ApiError::invalid(e.to_string()))?;
    let ttl = req.ttl_secs.unwrap_or(24 * 3600);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::invalid(format!(
            "ttl must be between 1 s and {MAX_TTL_SECS} s"
        )));
    }
    if let Some(n) = &req.node_id
        && !valid_ident(n)
    {
        return Err(ApiError::invalid(format!("node id {n:?} is not valid")));
    }
    if req.role == Role::Agent && req.node_id.is_none() {
        return Err(ApiError::invalid("an agent token needs a node id"));
    }
    let subject = req
        .subject
        .or_else(|| req.node_id.clone())
        .unwrap_or_else(|| format!("{}-{}", req.role, &uuid_short()));
    let (token, claims) = st.auth.issue(
        &subject,
        &tenant,
        req.role,
        Duration::from_secs(ttl),
        req.node_id.as_deref(),
    )?;
    tracing::info!(by = %caller.0.sub, tenant = %claims.tenant, role = %claims.role, jti = %claims.jti, "token issued");
    Ok((StatusCode::CREATED, Json(TokenReply { token, claims })))
}

fn uuid_short() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeToken {
    /// The token itself, or its `jti` (then `tenant` and `exp` are taken as given).
    token: Option<String>,
    jti: Option<String>,
    exp: Option<u64>,
    /// Tenant of the token named by `jti` (default: the caller's).
    tenant: Option<String>,
}

async fn revoke_token(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<RevokeToken>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ManageTokens)?;
    let (jti, tenant, exp) = match (req.token, req.jti) {
        (Some(t), None) => {
            let c = st
                .auth
                .verify(&t)
                .map_err(|e| ApiError::invalid(format!("cannot revoke: {e}")))?;
            (c.jti, c.tenant, c.exp)
        }
        (None, Some(j)) => {
            if !valid_ident(&j) {
                return Err(ApiError::invalid("jti is not valid"));
            }
            let exp = req.exp.unwrap_or(now_ms() / 1000 + MAX_TTL_SECS);
            let tenant = req.tenant.unwrap_or_else(|| caller.tenant().to_string());
            (j, tenant, exp)
        }
        _ => return Err(ApiError::invalid("give either token or jti")),
    };
    if !caller.0.may_administer(&tenant) {
        // Same answer as for an unknown object: another tenant's tokens are not visible.
        return Err(ApiError::not_found("token not found"));
    }
    auth::revoke(st.store.as_ref(), &jti, &tenant, exp).await?;
    tracing::info!(by = %caller.0.sub, %jti, "token revoked");
    Ok(Json(json!({"revoked": jti})))
}

async fn whoami(caller: Caller) -> Json<Claims> {
    Json(caller.0)
}

async fn status(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ReadCluster)?;
    let agents = st.jobs.agents(caller.tenant()).await?;
    let mut by_state: HashMap<&str, usize> = HashMap::new();
    for a in &agents {
        *by_state.entry(a.state.as_str()).or_default() += 1;
    }
    let leader = st.leader.snapshot();
    let holder = st.store.lease_holder().await?;
    let nodes = crate::app::live_nodes(&st).await?;
    Ok(Json(json!({
        "node_id": st.node_id,
        "store": st.store.backend(),
        "leader": leader.is_leader,
        "epoch": leader.epoch,
        "leader_node": holder.as_ref().map(|(h, _)| h.split_once('/').map_or(h.as_str(), |(n, _)| n).to_string()),
        "leader_epoch": holder.as_ref().map(|(_, e)| *e),
        "nodes": nodes,
        "store_epoch": st.store.current_epoch().await?,
        "agents": by_state,
        "queue_depth": st.jobs.queue_depth(caller.tenant()).await?,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

// ---- agent protocol -------------------------------------------------------------------

async fn agent_register(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> ApiResult<Response> {
    let node = caller.node_id()?;
    let reply = st
        .jobs
        .register(caller.tenant(), node, &req, now_ms())
        .await?;
    st.wake_scheduler();
    Ok(Json(reply).into_response())
}

async fn agent_heartbeat(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> ApiResult<Response> {
    let node = caller.node_id()?;
    Ok(Json(
        st.jobs
            .heartbeat(caller.tenant(), node, &hb, now_ms())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksQuery {
    after: Option<u64>,
    wait_secs: Option<u64>,
}

async fn agent_tasks(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<TasksQuery>,
) -> ApiResult<Response> {
    let node = caller.node_id()?.to_string();
    let tenant = caller.tenant().to_string();
    let after = q.after.unwrap_or(0);
    let wait = Duration::from_secs(q.wait_secs.unwrap_or(25)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let watch = st.inboxes.watch(&tenant, &node);
    loop {
        // Listening before reading: a task assigned after the read wakes this poll.
        let changed = watch.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let tasks = st.jobs.poll(&tenant, &node, after).await?;
        if !tasks.is_empty() {
            return Ok(Json(tasks).into_response());
        }
        if tokio::time::timeout_at(deadline, changed).await.is_err() {
            return Ok(Json(tasks).into_response());
        }
    }
}

async fn attempt_start(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = caller.node_id()?;
    st.jobs.start(caller.tenant(), node, &id, now_ms()).await?;
    Ok(Json(json!({"attempt_id": id, "state": "running"})))
}

/// Largest output chunk accepted in one request.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

async fn attempt_output(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(chunk): ApiJson<OutputChunk>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = caller.node_id()?;
    if chunk.data.len() > MAX_CHUNK_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("output chunks are limited to {MAX_CHUNK_BYTES} bytes"),
        ));
    }
    let seq = chunk.seq;
    st.jobs
        .append_output(caller.tenant(), node, &id, chunk)
        .await?;
    Ok(Json(json!({"attempt_id": id, "seq": seq})))
}

async fn attempt_result(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(result): ApiJson<AttemptResult>,
) -> ApiResult<Json<serde_json::Value>> {
    let node = caller.node_id()?;
    let recorded = st
        .jobs
        .finish(caller.tenant(), node, &id, result, now_ms())
        .await?;
    if recorded {
        st.metrics.results_recorded.inc();
        if let Some(h) = &st.history {
            h.result(caller.tenant(), &id);
        }
        if let Some((job_id, _)) = flux_core::model::parse_attempt_id(&id)
            && let Ok(job) = st.jobs.get(caller.tenant(), job_id).await
        {
            job_finished(&st, &job);
        }
    }
    st.wake_scheduler();
    Ok(Json(json!({"attempt_id": id, "recorded": recorded})))
}
