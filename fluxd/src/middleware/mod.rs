//! The layers every request passes: RED metrics ([`metrics`]), the token and role check of
//! each route ([`access`], by the table in [`routes`]), load shedding ([`limits`]) and the
//! audit record of mutating calls ([`audit`]). `api::app` stacks them.
//!
//! Each layer is a plain function that looks at the request, hands it on with [`forward`] and
//! returns a small future that finishes the work on the response. Written as `async fn`s taking
//! the request, they kept the request (240 bytes) two or three times over in their futures for
//! as long as the call lasted, as `Next::run` does once more: about 1 KiB per layer per request
//! in flight, which a fleet's waiting task polls held all at once before they waited in their
//! replies' bodies (README, *Engine figures*); job waits still do.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tower::Service;

pub mod access;
pub mod audit;
pub mod drain;
pub mod limits;
pub mod metrics;
pub mod routes;

/// The rest of the stack's answer to `req`: the request is handed on now, and the future
/// holds only the inner layers' boxed future (which `Next::run` would create on its first
/// poll, holding the request until then).
pub fn forward(mut next: Next, req: Request) -> impl Future<Output = Response> + Send + 'static {
    let answer = next.call(req);
    async move {
        match answer.await {
            Ok(resp) => resp,
            Err(never) => match never {},
        }
    }
}
