//! `/v1/webhooks`: create, list, show (with recent deliveries), delete and test the caller's
//! tenant's webhooks (admins; the role is checked before the body is read). The rules live in
//! `flux_core::webhooks`; the leader delivers.
//!
//! Guarantees: tenant scoped; bad input answered 422 naming the field (`deny_unknown_fields`
//! on the body); the secret is returned once, by the creation that generated it, never after.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use flux_core::model::now_ms;
use flux_core::webhooks::{self, CreateWebhook, WebhookError, WebhookView};
use serde::Serialize;

use super::extract::{ApiJson, Caller, Ctx};
use crate::error::{ApiError, ApiResult};

impl From<WebhookError> for ApiError {
    fn from(e: WebhookError) -> ApiError {
        match e {
            WebhookError::Invalid(m) => ApiError::invalid(m),
            e @ WebhookError::NotFound(_) => ApiError::not_found(e.to_string()),
            e @ WebhookError::Exists(_) => ApiError::conflict(e.to_string()),
            WebhookError::Store(s) => s.into(),
            WebhookError::Events(e) => e.into(),
            WebhookError::Corrupt(m) => {
                tracing::error!(what = %m, "corrupt webhook record");
                ApiError::unavailable("a webhook record is corrupt")
            }
        }
    }
}

#[derive(Serialize)]
pub(super) struct Created {
    #[serde(flatten)]
    webhook: WebhookView,
    /// The generated secret: shown only here.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn caller_admin(caller: &Caller) -> ApiResult<()> {
    if caller.0.role == flux_core::auth::Role::Admin {
        Ok(())
    } else {
        Err(ApiError::forbidden("webhooks are managed by admins"))
    }
}

pub(super) async fn create(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    caller_admin(&caller)?;
    let (webhook, secret) = webhooks::create(
        st.store.as_ref(),
        caller.tenant(),
        &req,
        st.webhooks.allow_private,
        &caller.0.sub,
        now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(Created { webhook, secret })))
}

pub(super) async fn list(Ctx { st, caller }: Ctx) -> ApiResult<Json<Vec<WebhookView>>> {
    caller_admin(&caller)?;
    Ok(Json(
        webhooks::list(st.store.as_ref(), caller.tenant()).await?,
    ))
}

pub(super) async fn get_one(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<WebhookView>> {
    caller_admin(&caller)?;
    Ok(Json(
        webhooks::get(st.store.as_ref(), caller.tenant(), &name).await?,
    ))
}

pub(super) async fn delete_one(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    caller_admin(&caller)?;
    webhooks::delete(st.store.as_ref(), caller.tenant(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
pub(super) struct Tested {
    ok: bool,
    response_code: Option<u16>,
    error: Option<String>,
}

pub(super) async fn test(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<Tested>> {
    caller_admin(&caller)?;
    let sent = webhooks::test(st.store.as_ref(), caller.tenant(), &name, &st.webhooks).await?;
    Ok(Json(Tested {
        ok: sent.ok,
        response_code: sent.code,
        error: sent.error,
    }))
}
