//! What handlers extract from a request, with rejections in the API error shape: JSON bodies
//! ([`ApiJson`]), queries ([`ApiQuery`]), the authenticated [`Caller`] (with the node's state:
//! [`Ctx`]), and the headers that carry preconditions (`If-Match`, `If-None-Match`) and
//! idempotency keys.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use flux_core::auth::{Claims, Permission};
use flux_core::store::Expect;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ApiResult};
use crate::middleware::access::{Authenticated, authenticate};
use crate::middleware::limits::BodyDeadline;
use crate::state::AppState;

/// JSON body extractor whose rejections use the API error shape: 400 for syntax, 422 for
/// unknown fields and wrong types, 413 for oversized bodies, 415 without a JSON content type,
/// 408 for a body that did not arrive within the body read timeout.
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
        let deadline = req.extensions().get::<BodyDeadline>().cloned();
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if let Some(d) = deadline.filter(BodyDeadline::passed) {
                return d.error();
            }
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

/// The authenticated caller: verified, unrevoked token claims (verified once per request, by
/// `middleware::access`).
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
        // Verified once per request by `middleware::access`, before the body.
        if let Some(Authenticated(claims)) = parts.extensions.get::<Authenticated>() {
            return Ok(Caller(claims.clone()));
        }
        // Boxed: the extractor's room is part of every handler's future, waiting ones too.
        Ok(Caller(Box::pin(authenticate(state, &parts.headers)).await?))
    }
}

/// What nearly every handler takes: the node's state and the authenticated caller, extracted
/// authenticated as [`Caller`] is.
pub struct Ctx {
    pub st: Arc<AppState>,
    pub caller: Caller,
}

impl FromRequestParts<Arc<AppState>> for Ctx {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, ApiError> {
        let caller = Caller::from_request_parts(parts, st).await?;
        let st = Arc::clone(st);
        Ok(Ctx { st, caller })
    }
}

/// `If-Match: <version>` (quotes allowed) or `If-None-Match: *`; neither means "any".
pub fn precondition(headers: &HeaderMap) -> ApiResult<Expect> {
    if let Some(v) = headers.get("if-none-match") {
        return match v.to_str() {
            Ok("*") => Ok(Expect::Absent),
            _ => Err(ApiError::bad_request("If-None-Match supports only *")),
        };
    }
    match headers.get("if-match") {
        None => Ok(Expect::Any),
        Some(v) => v
            .to_str()
            .ok()
            .map(|s| s.trim().trim_matches('"'))
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|n| *n > 0)
            .map(Expect::Version)
            .ok_or_else(|| {
                ApiError::bad_request("If-Match must be a state version (a positive integer)")
            }),
    }
}

/// A listing's `limit`: `default` when not given, a 400 unless it is between 1 and `max`.
pub fn list_limit(given: Option<usize>, default: usize, max: usize) -> ApiResult<usize> {
    let limit = given.unwrap_or(default);
    if !(1..=max).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be between 1 and {max}"
        )));
    }
    Ok(limit)
}

/// The precondition of a delete: `If-Match: <version>` or none; `If-None-Match` is a 400.
pub fn delete_precondition(headers: &HeaderMap) -> ApiResult<Expect> {
    let expect = precondition(headers)?;
    if expect == Expect::Absent {
        return Err(ApiError::bad_request(
            "If-None-Match makes no sense on delete",
        ));
    }
    Ok(expect)
}

/// A PUT's body names the object its path names: 422 (field `name`) otherwise. `kind` is what
/// the message calls the object ("state", "schedule").
pub fn same_name(kind: &str, body: &str, path: &str) -> ApiResult<()> {
    if body != path {
        return Err(ApiError::invalid(format!(
            "name: the body names {kind} {} but the path names {}",
            flux_core::state::shown(body),
            flux_core::state::shown(path)
        )));
    }
    Ok(())
}

/// The quota write's `If-Match: <version>`, where 0 stands for "never set"; none means "any".
pub fn quota_precondition(headers: &HeaderMap) -> ApiResult<Expect> {
    match headers.get("if-match").map(|v| v.to_str()) {
        None => Ok(Expect::Any),
        Some(Ok(v)) => match v.trim().trim_matches('"').parse::<u64>() {
            Ok(0) => Ok(Expect::Absent),
            Ok(n) => Ok(Expect::Version(n)),
            Err(_) => Err(ApiError::bad_request("If-Match must be a version number")),
        },
        Some(Err(_)) => Err(ApiError::bad_request("If-Match is not text")),
    }
}

/// The `X-Flux-Idempotency-Key` header, if any.
pub fn idempotency_header(headers: &HeaderMap) -> ApiResult<Option<String>> {
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
