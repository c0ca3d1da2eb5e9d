//! Schedule routes: `GET/POST /v1/schedules` and
//! `POST /v1/schedules/{name}/{pause,resume,trigger}` (`GET/PUT/DELETE /v1/schedules/{name}`
//! are `declared`'s). The permission of each route is checked
//! before any body byte is read (`middleware::access`); every rule is flux-core's.

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::Response;
use flux_core::auth::Permission;
use flux_core::model::now_ms;
use flux_core::schedule::{MAX_LIST, Run, ScheduleSpec, ScheduleView, Schedules};
use flux_core::store::Expect;
use serde::Deserialize;

use super::declared::store;
use super::extract::{ApiJson, ApiQuery, Ctx, list_limit};
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    after: Option<String>,
}

pub(super) async fn list(
    Ctx { st, caller }: Ctx,
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

/// Creates a schedule; 409 if the name is taken.
pub(super) async fn create(
    Ctx { st, caller }: Ctx,
    ApiJson(spec): ApiJson<ScheduleSpec>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    let name = spec.name.clone();
    match store::<Schedules>(&st, &caller, spec, Expect::Absent).await {
        Err(e) if e.status == StatusCode::PRECONDITION_FAILED => Err(ApiError::conflict(format!(
            "name: schedule {name} already exists (PUT /v1/schedules/{name} replaces it)"
        ))),
        other => other,
    }
}

/// `POST /v1/schedules/{name}/pause` (`PAUSED` true) and `.../resume` (false).
pub(super) async fn set_paused<const PAUSED: bool>(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Json<ScheduleView>> {
    caller.require(Permission::ManageStates)?;
    st.schedules
        .set_paused(caller.tenant(), &caller.0.sub, &name, PAUSED, now_ms())
        .await?;
    Ok(Json(st.schedules.get(caller.tenant(), &name).await?))
}

/// One run now, outside the schedule's slots: admitted as a submission of its jobs is (free
/// disk, the collector's lag, `max_queued`, `submit_per_sec`).
pub(super) async fn trigger(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<(StatusCode, Json<Run>)> {
    caller.require(Permission::ManageStates)?;
    super::jobs::admit_room(&st, caller.tenant()).await?;
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
