//! Request-count limits: requests beyond what a node should hold at once are shed with
//! `429 Too Many Requests` and `Retry-After`, instead of queueing until the node falls over.
//! Long-polls (job waits, followed logs) hold a connection for a long time, so they have their
//! own budget and cannot starve ordinary requests; agents' task polls have another, so users'
//! long-polls cannot starve agents; agent registrations have a
//! small one of their own so that a fleet reconnecting at once is spread out.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::Semaphore;

use crate::error::ApiError;

pub struct Limits {
    requests: Arc<Semaphore>,
    long_polls: Arc<Semaphore>,
    /// Agents' task polls have a pool of their own, so user long-polls cannot starve them.
    agent_polls: Arc<Semaphore>,
    registrations: Arc<Semaphore>,
}

impl Limits {
    pub fn new(requests: usize, long_polls: usize, registrations: usize) -> Limits {
        Limits {
            requests: Arc::new(Semaphore::new(requests)),
            long_polls: Arc::new(Semaphore::new(long_polls)),
            agent_polls: Arc::new(Semaphore::new(long_polls)),
            registrations: Arc::new(Semaphore::new(registrations)),
        }
    }
}

fn is_long_poll(req: &Request) -> bool {
    let path = req.uri().path();
    let query = req.uri().query().unwrap_or("");
    path.ends_with("/wait")
        || (path.ends_with("/logs") && query.split('&').any(|kv| kv == "follow=true"))
}

pub async fn shed(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let (pool, what, retry) = if req.uri().path() == "/v1/agent/register" {
        (&limits.registrations, "registrations", 2)
    } else if req.uri().path() == "/v1/agent/tasks" {
        (&limits.agent_polls, "agent polls", 1)
    } else if is_long_poll(&req) {
        (&limits.long_polls, "long-polls", 1)
    } else {
        (&limits.requests, "requests", 1)
    };
    // Job logs are the one streamed body; every other response is complete once built.
    let streamed = req.uri().path().ends_with("/logs");
    match pool.clone().try_acquire_owned() {
        Ok(_permit) if !streamed => next.run(req).await,
        Ok(permit) => {
            // The permit lives as long as the streamed body, so followed logs count until they
            // end, not only until their headers are sent.
            let (parts, body) = next.run(req).await.into_parts();
            let stream = body.into_data_stream().map(move |chunk| {
                let _held = &permit;
                chunk
            });
            Response::from_parts(parts, Body::from_stream(stream))
        }
        Err(_) => {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "overloaded",
                format!("this node is at its limit of concurrent {what}; retry later"),
            );
            e.retry_after = Some(retry);
            e.into_response()
        }
    }
}
