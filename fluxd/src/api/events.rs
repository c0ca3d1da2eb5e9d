//! `GET /v1/events`: the caller's tenant's event log as server-sent events.
//!
//! Each SSE event carries `id: REVISION.INDEX` (its place in the log, see
//! `flux_core::events`), `event: TYPE` and the event as JSON. `?since=ID` (or the
//! `Last-Event-ID` header) resumes strictly after that id; a bare `REVISION` resumes after every
//! event of that revision. Without either, a followed stream (`follow=true`, the default) starts
//! at the newest event, an unfollowed one at the oldest kept. Filters: `type`
//! (comma-separated, `job.*` wildcards), `object` (one object id), `selector` (agents' labels).
//!
//! The stream reads the durable log from the last position it sent, woken by the store's change
//! notices: it never keeps a copy of the log that could diverge from it, and it holds at most one
//! page ([`PAGE`]) in memory, so a slow reader costs the server nothing but its place in the log.
//! A reader more than `--events-max-lag` revisions behind the newest event while following is
//! sent `event: end` with `{"reason":"slow_client"}` and disconnected; it can resume with its last
//! id. A followed stream also ends (`event: end`) at `--max-follow`, when the token expires or is
//! revoked, and when the log was collected past its position (`reason: gone`).
//!
//! Guarantees:
//! - Tenant scoped: only the caller's tenant's log is read.
//! - Ids only grow along a stream; resuming after the last id received repeats and loses
//!   nothing that is still in the log; a `since` below the log's floor answers 410 before any
//!   event is sent.
//! - Bad input is refused before streaming: a malformed `since` 400, an unknown type or a bad
//!   selector 422, an unknown query field 400.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use flux_core::auth::Permission;
use flux_core::events::{self, EventError, Filter, Logged, Position};
use flux_core::selector::Selector;
use flux_core::store::Change;
use serde::Deserialize;
use tokio::sync::broadcast;

use super::extract::{ApiQuery, Ctx};
use super::jobs::{FOLLOW_RECHECK, FollowGuard};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Events read from the store at a time.
pub const PAGE: usize = 256;
/// Default of `--events-max-lag`.
pub const DEFAULT_MAX_LAG: u64 = 100_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    since: Option<String>,
    #[serde(rename = "type")]
    types: Option<String>,
    object: Option<String>,
    selector: Option<String>,
    follow: Option<bool>,
}

impl From<EventError> for ApiError {
    fn from(e: EventError) -> ApiError {
        match e {
            EventError::Invalid(m) => ApiError::invalid(m),
            g @ EventError::Gone { .. } => {
                ApiError::new(axum::http::StatusCode::GONE, "gone", g.to_string())
            }
            EventError::Store(s) => s.into(),
            EventError::Corrupt(m) => {
                tracing::error!(what = %m, "corrupt event");
                ApiError::unavailable("the event log holds a corrupt record")
            }
        }
    }
}

pub(super) async fn stream(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadJobs)?;
    let tenant = caller.tenant().to_string();
    let mut filter = Filter::default().with_types(q.types.as_deref().unwrap_or(""))?;
    if let Some(o) = q.object.filter(|o| !o.is_empty()) {
        if o.len() > 256 {
            return Err(ApiError::invalid("object: at most 256 characters"));
        }
        filter.object = Some(o);
    }
    if let Some(s) = q.selector.filter(|s| !s.is_empty()) {
        filter.selector =
            Some(Selector::parse(&s).map_err(|e| ApiError::invalid(format!("selector: {e}")))?);
    }
    let follow = q.follow.unwrap_or(true);
    let since = match q.since.as_deref().or_else(|| {
        headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .filter(|s| !s.is_empty())
    }) {
        Some(s) => Some(Position::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?),
        None => None,
    };
    // Subscribed before the first read, so nothing committed in between is missed.
    let rx = st.store.subscribe();
    let start = match since {
        Some(p) => p,
        None if follow => events::head(st.store.as_ref(), &tenant).await?,
        None => Position {
            revision: events::floor(st.store.as_ref(), &tenant).await?.0,
            index: None,
        },
    };
    // 410 (or any store error) before the stream starts.
    let first = events::read(st.store.as_ref(), &tenant, start, PAGE).await?;
    let cursor = Cursor {
        st: st.clone(),
        tenant,
        filter,
        follow,
        position: start,
        pending: first.into(),
        fresh: true,
        live: false,
        done: false,
        rx,
        guard: FollowGuard::new(&caller, st.max_follow),
    };
    let stream = futures::stream::unfold(cursor, |mut c| async move {
        c.next().await.map(|e| (Ok::<_, Infallible>(e), c))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

struct Cursor {
    st: Arc<AppState>,
    tenant: String,
    filter: Filter,
    follow: bool,
    /// The last position sent or passed over.
    position: Position,
    pending: VecDeque<Logged>,
    /// `pending` is the first page, read by the handler.
    fresh: bool,
    /// The stream has caught up with the log once.
    live: bool,
    done: bool,
    rx: broadcast::Receiver<Arc<Change>>,
    /// The follower's token and the time limit, checked again while streaming.
    guard: FollowGuard,
}

fn end(reason: &str, message: String) -> SseEvent {
    SseEvent::default()
        .event("end")
        .data(serde_json::json!({ "reason": reason, "message": message }).to_string())
}

impl Cursor {
    async fn next(&mut self) -> Option<SseEvent> {
        loop {
            if self.done {
                return None;
            }
            while let Some(l) = self.pending.pop_front() {
                self.position = l.position;
                if self.filter.matches(&l.event) {
                    let data = serde_json::to_string(&l.view()).expect("events serialize");
                    return Some(
                        SseEvent::default()
                            .id(l.position.id())
                            .event(l.event.kind.clone())
                            .data(data),
                    );
                }
            }
            if let Some(e) = self.must_end().await {
                self.done = true;
                return Some(e);
            }
            let page = if self.fresh {
                self.fresh = false;
                None
            } else {
                match events::read(self.st.store.as_ref(), &self.tenant, self.position, PAGE).await
                {
                    Ok(p) => Some(p),
                    Err(EventError::Gone { .. }) => {
                        self.done = true;
                        return Some(end(
                            "gone",
                            "the log was collected past this stream's position; list again".into(),
                        ));
                    }
                    Err(e) => {
                        self.done = true;
                        return Some(end("error", e.to_string()));
                    }
                }
            };
            match page {
                None => {
                    // The handler's first page was consumed: read on.
                    continue;
                }
                Some(p) if p.is_empty() => {
                    self.live = true;
                    if !self.follow {
                        self.done = true;
                        return None;
                    }
                    let deadline =
                        (tokio::time::Instant::now() + FOLLOW_RECHECK).min(self.guard.time_limit());
                    flux_core::store::wait_for_change(
                        &mut self.rx,
                        &self.tenant,
                        events::EVENTS,
                        deadline,
                    )
                    .await;
                }
                Some(p) => {
                    if self.live && self.follow && p.len() == PAGE {
                        let head = events::head(self.st.store.as_ref(), &self.tenant).await;
                        if let Ok(h) = head
                            && h.revision.saturating_sub(self.position.revision)
                                > self.st.events_max_lag
                        {
                            self.done = true;
                            return Some(end(
                                "slow_client",
                                format!(
                                    "this stream fell more than {} revisions behind; resume with its last id",
                                    self.st.events_max_lag
                                ),
                            ));
                        }
                    }
                    self.pending = p.into();
                }
            }
        }
    }

    /// For a follow: the end event if it must end now (time limit, token expired or revoked).
    async fn must_end(&mut self) -> Option<SseEvent> {
        if !self.follow {
            return None;
        }
        match self.guard.check(&self.st, &self.tenant).await {
            Ok(verdict) => Some(end("ended", verdict?.message())),
            Err(e) => Some(end("error", e.to_string())),
        }
    }
}
