//! Schedule routes: `GET/POST /v1/schedules`, `GET/PUT/DELETE /v1/schedules/{name}` and
//! `POST /v1/schedules/{name}/{pause,resume,trigger}`. The permission of each route is checked
//! before any body byte is read (`middleware::access`); every rule is flux-core's.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use flux_core::auth::Permission;
use flux_core::model::now_ms;
use flux_core::schedule::{MAX_LIST, Run, ScheduleSpec, ScheduleView};
use flux_core::store::Expect;
use serde::Deserialize;
use serde_json::json;

use super::extract::{
    ApiJson, ApiQuery, Caller, delete_precondition, list_limit, precondition, same_name,
};
use super::reply::written;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Vec<ScheduleView>>> {
    caller.require(Permission::ReadStates)?;
    let limit = list_limit(q.limit, 100, MAX_LIST)?;
    if q.after
        .as_deref()
        .is_some_and(|a| !flux_core::model::valid_ident(a))
    {
        return Err(ApiError::invalid(
            "after must be a schedule name (1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-')",
        ));
    }
    Ok(Json(
        st.schedules
            .list(caller.tenant(), q.after.as_deref(), limit)
            .await?,
    ))
}

pub(super) async fn get_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    caller.require(Permission::ReadStates)?;
    Ok(Json(st.schedules.get(caller.tenant(), &name).await?))
}

async fn store(
    st: &AppState,
    caller: &Caller,
    spec: ScheduleSpec,
    expect: Expect,
) -> ApiResult<Response> {
    let name = spec.name.clone();
    let (_, created) = st
        .schedules
        .put(caller.tenant(), &caller.0.sub, spec, expect, now_ms())
        .await?;
    let view = st.schedules.get(caller.tenant(), &name).await?;
    Ok(written(created, view.version, view))
}

/// Creates a schedule; 409 if the name is taken.
pub(super) async fn create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(spec): ApiJson<ScheduleSpec>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    let name = spec.name.clone();
    match store(&st, &caller, spec, Expect::Absent).await {
        Err(e) if e.status == StatusCode::PRECONDITION_FAILED => Err(ApiError::conflict(format!(
            "name: schedule {name} already exists (PUT /v1/schedules/{name} replaces it)"
        ))),
        other => other,
    }
}

pub(super) async fn put_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<ScheduleSpec>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    same_name("schedule", &spec.name, &name)?;
    let expect = precondition(&headers)?;
    store(&st, &caller, spec, expect).await
}

pub(super) async fn delete_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ManageStates)?;
    let expect = delete_precondition(&headers)?;
    let v = st.schedules.delete(caller.tenant(), &name, expect).await?;
    Ok(Json(json!({"deleted": name, "version": v})))
}

/// `POST /v1/schedules/{name}/pause` (`PAUSED` true) and `.../resume` (false).
pub(super) async fn set_paused<const PAUSED: bool>(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    caller.require(Permission::ManageStates)?;
    st.schedules
        .set_paused(caller.tenant(), &caller.0.sub, &name, PAUSED, now_ms())
        .await?;
    Ok(Json(st.schedules.get(caller.tenant(), &name).await?))
}

/// One run now, outside the schedule's slots: admitted as a submission of its jobs is (free
/// disk, `max_queued`, `submit_per_sec`).
pub(super) async fn trigger(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    caller.require(Permission::ManageStates)?;
    super::jobs::admit_disk(&st)?;
    let run = st
        .schedules
        .trigger(
            caller.tenant(),
            &caller.0.sub,
            &name,
            now_ms(),
            Some(&st.rates),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}
