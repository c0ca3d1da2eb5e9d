//! Rollout routes: `POST /v1/rollouts` (create), `GET /v1/rollouts` (one page, newest first),
//! `GET /v1/rollouts/{id}`, and `POST /v1/rollouts/{id}/pause|resume|cancel|retry`. The rules
//! are `flux_core::rollout`'s; the leader drives what these create.
//!
//! Guarantees: the role is checked before the body is read (`middleware::routes`); every call
//! is scoped to the caller's tenant; a bad spec is a 422 naming its field and creates nothing;
//! a listing reads at most `limit` records.

use std::sync::Arc;

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use flux_core::auth::Permission;
use flux_core::model::now_ms;
use flux_core::rollout::{Control, Rollout, RolloutSpec, Rollouts};
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Caller, Ctx, list_limit};
use crate::error::ApiResult;
use crate::state::AppState;

fn service(st: &AppState) -> Rollouts {
    Rollouts::new(st.store.clone(), st.jobs.clone())
}

pub(super) async fn create(
    Ctx { st, caller }: Ctx,
    ApiJson(spec): ApiJson<RolloutSpec>,
) -> ApiResult<Response> {
    caller.require(Permission::SubmitJobs)?;
    // Admitted like a submission (free space, the collector); the jobs its steps make later
    // are the leader's and are not refused.
    super::jobs::admit_room(&st, caller.tenant()).await?;
    let r = service(&st)
        .create(caller.tenant(), &caller.0.sub, spec, now_ms(), None)
        .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

pub(super) async fn list(
    Ctx { st, caller }: Ctx,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadJobs)?;
    let limit = list_limit(q.limit, 50, flux_core::rollout::MAX_LIST)?;
    let (page, next) = service(&st)
        .list(caller.tenant(), limit, q.cursor.as_deref())
        .await?;
    Ok(super::reply::page(page, next))
}

pub(super) async fn get_one(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Rollout>> {
    caller.require(Permission::ReadJobs)?;
    Ok(Json(service(&st).get(caller.tenant(), &id).await?))
}

async fn control(st: &AppState, caller: &Caller, id: &str, c: Control) -> ApiResult<Json<Rollout>> {
    let p = match c {
        Control::Cancel => Permission::CancelJobs,
        _ => Permission::SubmitJobs,
    };
    caller.require(p)?;
    Ok(Json(
        service(st)
            .control(caller.tenant(), id, c, now_ms())
            .await?,
    ))
}

/// The route of `POST /v1/rollouts/{id}/pause`, `.../resume` or `.../cancel` (no body): the
/// control `c` of the caller's rollout `id`.
pub(super) fn route(c: Control) -> MethodRouter<Arc<AppState>> {
    post(
        move |Ctx { st, caller }: Ctx, Path(id): Path<String>| async move {
            control(&st, &caller, &id, c).await
        },
    )
}

pub(super) async fn retry(Ctx { st, caller }: Ctx, Path(id): Path<String>) -> ApiResult<Response> {
    caller.require(Permission::SubmitJobs)?;
    super::jobs::admit_room(&st, caller.tenant()).await?;
    let r = service(&st)
        .retry(caller.tenant(), &id, &caller.0.sub, now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(r)).into_response())
}
