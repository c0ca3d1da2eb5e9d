//! The agent protocol, `/v1/agent/*`: register, heartbeat, the task long-poll, and an
//! attempt's start, output chunks and result (which may carry the attempt's last output, stored
//! in the same commit as the result). Every call is made with an agent token, whose
//! node id names the agent, and (after registering) the session secret the registration
//! returned, in the `X-Flux-Session` header: see `flux_core::jobs::AgentCaller`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Path};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flux_core::client::POLL_HEARD_HEADER;
use flux_core::jobs::{AgentCaller, Recorded};
use flux_core::model::{Heartbeat, OutputChunk, RegisterAgent, ResultReport, now_ms};
use serde::Deserialize;
use serde_json::json;

use super::MAX_WAIT;
use super::extract::{ApiJson, ApiQuery, Caller, Ctx};
use super::jobs::job_finished;
use crate::error::{ApiError, ApiResult};
use crate::inboxes::InboxWatch;
use crate::middleware::access::CheckedAgent;
use crate::state::AppState;
use tokio::sync::futures::OwnedNotified;

/// Header carrying an agent registration's session secret.
pub const SESSION_HEADER: &str = "x-flux-session";

/// The agent making the call: its token's node id and the session it presented (a header that
/// is not text counts as none).
fn agent_caller<'a>(caller: &'a Caller, headers: &'a HeaderMap) -> ApiResult<AgentCaller<'a>> {
    Ok(AgentCaller::new(caller.node_id()?, session_of(headers)))
}

/// [`agent_caller`] with the agent's record as the session check of the same request read it,
/// for the call's first read of it. Only for calls without a body: one that reads a body first
/// (output, result) could use a record as old as its upload, so those read afresh.
fn agent_call<'a>(
    caller: &'a Caller,
    headers: &'a HeaderMap,
    checked: &'a Option<Extension<CheckedAgent>>,
) -> ApiResult<AgentCaller<'a>> {
    Ok(agent_caller(caller, headers)?.checked(checked.as_ref().map(|c| &*c.0.0)))
}

/// The session an agent's call presented (a header that is not text counts as none).
pub(crate) fn session_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok())
}

pub(super) async fn agent_register(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    ApiJson(req): ApiJson<RegisterAgent>,
) -> ApiResult<Response> {
    let agent = agent_caller(&caller, &headers)?;
    let reply = st
        .jobs
        .register(caller.tenant(), agent, &req, now_ms())
        .await?;
    st.wake_scheduler();
    Ok(Json(reply).into_response())
}

pub(super) async fn agent_heartbeat(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> ApiResult<Response> {
    let agent = agent_caller(&caller, &headers)?;
    Ok(Json(
        st.jobs
            .heartbeat(caller.tenant(), agent, &hb, now_ms())
            .await?,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TasksQuery {
    after: Option<u64>,
    wait_secs: Option<u64>,
    /// The wait in milliseconds (agents whose polls count as heartbeats wait less than an
    /// interval, which may be under a second); not with `wait_secs`.
    wait_ms: Option<u64>,
}

pub(super) async fn agent_tasks(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    checked: Option<Extension<CheckedAgent>>,
    ApiQuery(q): ApiQuery<TasksQuery>,
) -> ApiResult<Response> {
    let agent = agent_call(&caller, &headers, &checked)?;
    let tenant = caller.tenant();
    let after = q.after.unwrap_or(0);
    let wait = match (q.wait_secs, q.wait_ms) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("wait_ms: not with wait_secs"));
        }
        (_, Some(ms)) => Duration::from_millis(ms),
        (secs, None) => Duration::from_secs(secs.unwrap_or(25)),
    }
    .min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let watch = st.inboxes.watch(tenant, agent.node_id);
    // Listening before reading: a task assigned after the read wakes this poll.
    let mut changed = Box::pin(watch.changed());
    changed.as_mut().enable();
    // The poll's arrival is heard from the agent (its first read), and the reply says so.
    // Boxed, as are the other store calls of a request that can wait: what a waiting poll
    // holds is its own state, not the larger one of a read it is not doing.
    // A poll after a result usually finds nothing (the result only deleted the entry): when
    // the notices show nothing given above `after`, only the caller is checked.
    let tasks = if st.inboxes.nothing_after(tenant, agent.node_id, after) {
        st.metrics.task_polls_unread.inc();
        Box::pin(
            st.jobs
                .poll_heard_nothing_new(tenant, agent, after, Some(now_ms())),
        )
        .await?;
        Vec::new()
    } else {
        Box::pin(st.jobs.poll_heard(tenant, agent, after, Some(now_ms()))).await?
    };
    let heard = (
        POLL_HEARD_HEADER,
        st.jobs.config().heartbeat_interval.as_millis().to_string(),
    );
    if !tasks.is_empty() {
        // Tasks carry secret values: a token revoked or expired since it was checked gets none.
        Box::pin(still_valid(&st, &caller)).await?;
        return Ok(([heard], Json(tasks)).into_response());
    }
    // Nothing yet. Every refusal this poll can get has been given (its token, its session, its
    // query), so its headers go now and the wait is its reply's body: a waiting poll holds that
    // body alone, not the futures of the request's layers and handler (a fleet's worth of
    // waiting polls: README, *Engine figures*).
    let session = session_of(&headers).map(str::to_string);
    let node = agent.node_id.to_string();
    let waiting = Waiting {
        st,
        caller,
        node,
        session,
        after,
        deadline,
        watch,
    };
    let body = Body::new(OneFrame::new(Body::from_stream(futures::stream::once(
        waiting.until_tasks(changed),
    ))));
    let json = [(header::CONTENT_TYPE, "application/json")];
    Ok(([heard], json, body).into_response())
}

/// A body of one data frame that says it has ended once that frame is out, so the frame goes
/// with the end of its stream (one HTTP/2 frame where a stream's end is another).
pub(super) struct OneFrame {
    inner: Body,
    ended: bool,
}

impl OneFrame {
    /// The first frame of `inner`, and then the end.
    pub(super) fn new(inner: Body) -> OneFrame {
        OneFrame {
            inner,
            ended: false,
        }
    }
}

impl http_body::Body for OneFrame {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        if self.ended {
            return std::task::Poll::Ready(None);
        }
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        self.ended = true;
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// The body of a task poll that ends without tasks.
const NO_TASKS: Bytes = Bytes::from_static(b"[]");

/// A task poll waiting in its reply's body.
struct Waiting {
    st: Arc<AppState>,
    /// The token's claims: its tenant, and what `still_valid` checks again.
    caller: Caller,
    node: String,
    session: Option<String>,
    after: u64,
    deadline: tokio::time::Instant,
    /// Registered for the wait's whole length.
    watch: InboxWatch,
}

impl Waiting {
    /// The body: the agent's tasks once its inbox holds some, or none at the deadline. With the
    /// status sent already, what would have been a refusal (a token revoked or expired during
    /// the wait, a registration replaced meanwhile, a store that fails) is an empty list: the
    /// agent polls again at once, and that poll gets the refusal. Such a refusal is found when
    /// the poll wakes: a write to its inbox, or its deadline. A registration replaced
    /// meanwhile deletes the old one's entries, and a deletion wakes nobody, so that poll
    /// ends at its deadline, having been given nothing.
    async fn until_tasks(
        self,
        mut changed: Pin<Box<OwnedNotified>>,
    ) -> Result<Bytes, std::convert::Infallible> {
        loop {
            if tokio::time::timeout_at(self.deadline, changed)
                .await
                .is_err()
            {
                return Ok(NO_TASKS);
            }
            changed = Box::pin(self.watch.changed());
            changed.as_mut().enable();
            let agent = AgentCaller::new(&self.node, self.session.as_deref());
            let read = Box::pin(self.st.jobs.poll_heard(
                self.caller.tenant(),
                agent,
                self.after,
                None,
            ));
            let tasks = match read.await {
                Ok(tasks) if tasks.is_empty() => continue,
                Ok(tasks) => tasks,
                // Debug only: a store that fails fails every waiting poll at once, and its
                // failure is told by the next poll's 503 and the store's own metrics.
                Err(e) => {
                    tracing::debug!(node = %self.node, error = %e, "a waiting task poll ends empty");
                    return Ok(NO_TASKS);
                }
            };
            if let Err(e) = Box::pin(still_valid(&self.st, &self.caller)).await {
                tracing::info!(node = %self.node, error = %e.message, "a waiting task poll ends empty");
                return Ok(NO_TASKS);
            }
            return Ok(match serde_json::to_vec(&tasks) {
                Ok(v) => Bytes::from(v),
                Err(e) => {
                    tracing::error!(error = %e, "tasks not encoded");
                    NO_TASKS
                }
            });
        }
    }
}

/// The caller's token is still unexpired and unrevoked (it was when the request arrived).
async fn still_valid(st: &AppState, caller: &Caller) -> ApiResult<()> {
    let now = now_ms() / 1000;
    if caller.0.exp <= now {
        return Err(flux_core::auth::AuthError::Expired.into());
    }
    if st.is_refused(&caller.0).await? {
        return Err(flux_core::auth::AuthError::Revoked.into());
    }
    Ok(())
}

pub(super) async fn attempt_start(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    checked: Option<Extension<CheckedAgent>>,
    Path(id): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = agent_call(&caller, &headers, &checked)?;
    st.jobs.start(caller.tenant(), agent, &id, now_ms()).await?;
    Ok(Json(json!({"attempt_id": id, "state": "running"})))
}

/// Largest output chunk accepted in one request.
pub const MAX_CHUNK_BYTES: usize = 256 * 1024;

pub(super) async fn attempt_output(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(chunk): ApiJson<OutputChunk>,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = agent_caller(&caller, &headers)?;
    if chunk.data.len() > MAX_CHUNK_BYTES {
        return Err(ApiError::too_large(format!(
            "output chunks are limited to {MAX_CHUNK_BYTES} bytes"
        )));
    }
    let seq = chunk.seq;
    st.jobs
        .append_output(caller.tenant(), agent, &id, chunk)
        .await?;
    Ok(Json(json!({"attempt_id": id, "seq": seq})))
}

pub(super) async fn attempt_result(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(report): ApiJson<ResultReport>,
) -> ApiResult<Json<serde_json::Value>> {
    let agent = agent_caller(&caller, &headers)?;
    let (result, output, ran_ms) = report.into_parts();
    // The output carried with a result is held to what one output upload may carry.
    let carried: usize = output.iter().map(|c| c.data.len()).sum();
    if carried > MAX_CHUNK_BYTES {
        return Err(ApiError::too_large(format!(
            "output: the output carried with a result is limited to {MAX_CHUNK_BYTES} bytes"
        )));
    }
    let recorded = st
        .jobs
        .finish_with_output(
            caller.tenant(),
            agent,
            &id,
            result,
            &output,
            ran_ms,
            now_ms(),
        )
        .await?;
    if let Recorded::Result { ended } = &recorded {
        st.metrics.results_recorded.inc();
        if let Some(h) = &st.history {
            h.result(caller.tenant(), &id);
        }
        if let Some(job) = ended {
            job_finished(&st, job);
        }
    }
    st.wake_scheduler();
    Ok(Json(
        json!({"attempt_id": id, "recorded": recorded.recorded()}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body as _;

    /// A waiting poll's body is one data frame, and says it has ended once that frame is out
    /// (so the frame carries the end of its HTTP/2 stream).
    #[tokio::test]
    async fn a_one_frame_body_ends_with_its_frame() {
        let mut body = OneFrame {
            inner: Body::from_stream(futures::stream::once(async {
                Ok::<_, std::convert::Infallible>(NO_TASKS)
            })),
            ended: false,
        };
        assert!(!body.is_end_stream());
        let frame = futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("data");
        assert_eq!(frame.into_data().ok(), Some(NO_TASKS));
        assert!(body.is_end_stream());
        let after = futures::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        assert!(after.is_none());
    }
}
