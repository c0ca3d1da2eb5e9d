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

use super::routes::{self, Access};
use crate::error::ApiError;
use crate::state::AppState;

/// The verified, unrevoked claims of the request's token.
#[derive(Clone, Debug)]
pub struct Authenticated(pub Claims);

/// The claims of the bearer token in `headers`: verified and not revoked.
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)?
        .to_str()
        .map_err(|_| AuthError::Malformed("authorization header is not text".into()))?;
    let token = auth::bearer(value)?;
    let claims = st.auth.verify(token)?;
    if st.is_revoked(&claims.tenant, &claims.jti).await? {
        return Err(AuthError::Revoked.into());
    }
    Ok(claims)
}

/// Verifies the token and checks the route's access; puts the claims and the route's rule in
/// the request.
pub async fn authorize(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
    let rule = routes::rule(req.method(), route);
    if rule.access != Access::Public {
        let claims = match authenticate(&st, req.headers()).await {
            Ok(c) => c,
            Err(e) => return e.into_response(),
        };
        if let Err(m) = rule.access.check(&claims) {
            return ApiError::forbidden(m).into_response();
        }
        req.extensions_mut().insert(Authenticated(claims));
    }
    req.extensions_mut().insert(rule);
    next.run(req).await
}
