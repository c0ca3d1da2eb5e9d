//! The audit trail of the API: a middleware that appends every successful mutating call to the
//! caller's tenant's hash chain before the answer leaves.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use flux_core::audit::Event;
use flux_core::auth;
use flux_core::model::now_ms;

use crate::state::AppState;

/// Which calls are recorded. Agent-protocol calls other than registration are the machinery of
/// jobs already audited (their submission and cancellation); recording every heartbeat would
/// drown the trail.
fn audited(method: &Method, route: &str) -> bool {
    let mutating = matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) && (!route.starts_with("/v1/agent/")
        || route == "/v1/agent/register"
        || route == "/v1/agent/renew");
    // Taking a backup copies every tenant's data: that is worth a record too.
    mutating || (*method == Method::GET && route == "/v1/backup")
}

/// Marks a successful answer to a mutating method that changed nothing (a dry run, an apply
/// that found every object as declared): it is not recorded, so a caller allowed only to read
/// cannot grow the trail.
#[derive(Clone, Copy, Debug)]
pub struct Unchanged;

pub fn mark_unchanged(resp: &mut Response) {
    resp.extensions_mut().insert(Unchanged);
}

/// Appends successful mutating calls to the audit log. The answer waits for the record to be
/// durable.
pub async fn record(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let Some(route) = route.filter(|r| audited(&method, r)) else {
        return next.run(req).await;
    };
    let object = req.uri().path().to_string();
    // The handler verifies the token; here it only names the actor of a call that succeeded.
    let claims = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth::bearer(v).ok())
        .and_then(auth::peek_claims);
    let resp = next.run(req).await;
    let changed = resp.extensions().get::<Unchanged>().is_none();
    let Some(claims) = claims.filter(|_| resp.status().is_success() && changed) else {
        return resp;
    };
    let version = resp
        .headers()
        .get("x-flux-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let event = Event {
        at: now_ms(),
        actor: claims.sub,
        tenant: claims.tenant,
        action: format!("{method} {route}"),
        object,
        status: resp.status().as_u16(),
        version,
        jti: Some(claims.jti),
        role: Some(claims.role.to_string()),
        issuer: Some(claims.iss),
    };
    // The call's effect is committed whatever happens here: answering an error would make a
    // client retry (and, say, submit a job twice). A record that cannot be written is logged
    // with what it would have said, counted (`flux_audit_append_failures_total`), and the gap
    // it leaves is not silent.
    if let Err(e) = st.audit.append(event.clone()).await {
        st.metrics.audit_failures.inc();
        tracing::error!(error = %e, actor = %event.actor, tenant = %event.tenant, action = %event.action, object = %event.object, "audit record not written");
    }
    resp
}
