//! Authorization before anything else: the bearer token is verified (signature, expiry,
//! revocation) once per request and the route's [`Access`] checked, before the pool admission
//! of `middleware::limits` and before any byte of the body is read. A request without a valid
//! token gets 401, one whose role the route does not allow 403, whatever body it is sending.
//! The verified claims go into the request ([`Authenticated`]) for `api::extract::Caller`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use flux_core::auth::{self, AuthError, Claims};
use flux_core::model::Agent;

use super::routes::{self, Access};
use crate::api::agent_protocol::session_of;
use crate::error::ApiError;
use crate::state::AppState;

/// The verified, unrevoked claims of the request's token.
#[derive(Clone, Debug)]
pub struct Authenticated(pub Claims);

/// The calling agent's record as the session check read it, for the first read of it by a
/// handler that reads no body before (`AgentCaller::checked`): such a call is one read of the
/// record, not two.
#[derive(Clone, Debug)]
pub struct CheckedAgent(pub Arc<Agent>);

/// The claims of the bearer token in `headers`: verified and not revoked (looked up in the
/// node's memory of revocations, [`AppState::is_revoked`], which reads the store only while
/// that memory cannot be trusted).
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not text".into()))?;
    let token = auth::bearer(value)?;
    // An enrollment token's refusal says so: its holder is an agent being set up, whose
    // operator needs to know which token to replace.
    let enrollment = |e: AuthError| -> ApiError {
        let what = auth::peek_claims(token).filter(|c| c.role == auth::Role::Enroll);
        match (what, e) {
            (Some(_), AuthError::Expired) => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "enrollment token has expired",
            ),
            (Some(_), AuthError::Revoked) => ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                "enrollment token has been revoked",
            ),
            (_, e) => e.into(),
        }
    };
    let claims = st.auth.verify(token).map_err(enrollment)?;
    if st.is_refused(&claims).await? {
        return Err(enrollment(AuthError::Revoked));
    }
    Ok(claims)
}

/// Verifies the token and checks the route's access (for agent calls, the registration's
/// session too); puts the claims and the route's rule in the request.
pub fn authorize(
    State(st): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> impl Future<Output = Response> + Send + 'static {
    // The checks read the store: they run in a future of their own, freed before the rest of
    // the stack runs, so that a long call does not keep their room (nor the request) here.
    let checked = Box::pin(admit(st, req));
    async move {
        let answer = match checked.await {
            Ok(req) => super::forward(next, req),
            Err(refused) => return refused,
        };
        answer.await
    }
}

/// The request with its claims and rule, or the refusal.
async fn admit(st: Arc<AppState>, mut req: Request) -> Result<Request, Response> {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let rule = routes::rule(req.method(), route);
    if rule.access != Access::Public {
        let claims = authenticate(&st, req.headers())
            .await
            .map_err(IntoResponse::into_response)?;
        if let Err(m) = rule.access.check(&claims) {
            return Err(ApiError::forbidden(m).into_response());
        }
        // An agent call after registering must come from the registration's holder: a copy of
        // the token without the session is refused here, before it takes a permit.
        if rule.access == Access::Agent
            && route != Some("/v1/agent/register")
            && let Some(node) = claims.node_id.as_deref()
        {
            let caller = flux_core::jobs::AgentCaller::new(node, session_of(req.headers()));
            match st.jobs.check_session(&claims.tenant, caller).await {
                Ok(agent) => req.extensions_mut().insert(CheckedAgent(Arc::new(agent))),
                Err(e) => return Err(ApiError::from(e).into_response()),
            };
        }
        req.extensions_mut().insert(Authenticated(claims));
    }
    req.extensions_mut().insert(rule);
    Ok(req)
}
