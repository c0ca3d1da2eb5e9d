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
pub fn record(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> impl Future<Output = Response> + Send + 'static {
    // Boxed, as the record's commit below: room in this future is room in every call's.
    let call = Call::of(&req).map(Box::new);
    let answer = super::forward(next, req);
    async move {
        let resp = answer.await;
        match call {
            Some(call) => Box::pin(call.record(&st, resp)).await,
            None => resp,
        }
    }
}

/// What the audit record of an audited call says, known before the call runs.
struct Call {
    route: String,
    method: Method,
    object: String,
    claims: Option<auth::Claims>,
}

impl Call {
    /// The call `req` makes, if it is one the log records.
    fn of(req: &Request) -> Option<Call> {
        let route = req.extensions().get::<MatchedPath>()?.as_str();
        let method = req.method().clone();
        if !audited(&method, route) {
            return None;
        }
        Some(Call {
            route: route.to_string(),
            method,
            object: req.uri().path().to_string(),
            // The handler verifies the token; here it only names the actor of a call that
            // succeeded.
            claims: req
                .headers()
                .get(axum::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| auth::bearer(v).ok())
                .and_then(auth::peek_claims),
        })
    }

    /// Appends the record of the call that answered `resp`, if it succeeded and changed
    /// something.
    async fn record(self: Box<Self>, st: &AppState, resp: Response) -> Response {
        let Call {
            route,
            method,
            object,
            claims,
        } = *self;
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
}
