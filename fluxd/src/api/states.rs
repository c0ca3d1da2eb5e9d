//! Desired-state routes: `GET/POST /v1/states`, `POST /v1/states/{name}/resume` (lift a
//! rollout's halt) and the seed-compatible `POST /states` (`GET/PUT/DELETE /v1/states/{name}`
//! are `declared`'s).

use axum::Json;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use flux_core::auth::Permission;
use flux_core::model::now_ms;
use flux_core::state::{ApplyRequest, StateView};
use flux_core::state::{DEFAULT_INTERVAL_SECS, DEFAULT_TIMEOUT_SECS, StateSpec, Targets};
use flux_core::store::Expect;
use serde::Deserialize;
use serde_json::json;

use super::extract::{ApiJson, Ctx};
use crate::error::ApiResult;

pub(super) async fn list(Ctx { st, caller }: Ctx) -> ApiResult<Json<Vec<StateView>>> {
    caller.require(Permission::ReadStates)?;
    Ok(Json(st.states.list(caller.tenant()).await?))
}

pub(super) async fn apply(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Response> {
    if req.dry_run {
        caller.require(Permission::ReadStates)?;
    } else {
        caller.require(Permission::ManageStates)?;
    }
    // The file's [[schedule]] tables are planned and written in the same transaction. A
    // viewer's dry run never learns whether a secret given in clear is the stored one.
    let may_write = caller.0.role.allows(Permission::ManageStates);
    let plan = flux_core::schedule::apply(
        st.states.states(),
        &st.schedules,
        caller.tenant(),
        &caller.0.sub,
        req,
        now_ms(),
        may_write,
    )
    .await?;
    if !plan.dry_run && plan.has_changes() {
        tracing::info!(by = %caller.0.sub, tenant = %caller.tenant(), changes = plan.items.len() + plan.schedules.len(), "states applied");
    }
    // A dry run (which a viewer may do) or an apply that found nothing to change wrote
    // nothing: it is not an audit record.
    let unchanged = plan.dry_run || !plan.has_changes();
    let mut resp = Json(plan).into_response();
    if unchanged {
        crate::middleware::audit::mark_unchanged(&mut resp);
    }
    Ok(resp)
}

/// `POST /v1/states/{name}/resume`: resumes the remediation its rollout halted (no body).
/// Resuming a state that is not halted changes nothing (and is not an audit record); a state
/// without a rollout table is a 409.
pub(super) async fn resume(
    Ctx { st, caller }: Ctx,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    let (view, changed) = st
        .states
        .states()
        .resume(caller.tenant(), &name, &caller.0.sub, now_ms())
        .await?;
    if changed {
        tracing::info!(by = %caller.0.sub, tenant = %caller.tenant(), state = %name, "state remediation resumed");
    }
    let mut resp = Json(view).into_response();
    if !changed {
        crate::middleware::audit::mark_unchanged(&mut resp);
    }
    Ok(resp)
}

/// The seed's `POST /states` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SeedState {
    node_id: String,
    check_cmd: String,
    apply_cmd: String,
    #[serde(default)]
    desired_exit_code: i32,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval_secs: Option<u64>,
    #[serde(default)]
    timeout_secs: Option<u64>,
}

pub(super) async fn seed_create(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<SeedState>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    let name = req
        .name
        .unwrap_or_else(|| format!("s-{}", uuid::Uuid::now_v7().simple()));
    let spec = StateSpec {
        name: name.clone(),
        targets: Targets {
            agents: vec![req.node_id],
            labels: Default::default(),
        },
        check: req.check_cmd,
        apply: req.apply_cmd,
        interval_secs: req.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS),
        timeout_secs: req.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS),
        env: Default::default(),
        desired_exit_code: req.desired_exit_code,
        rollout: None,
    };
    let (version, _) = st
        .states
        .put(
            caller.tenant(),
            &caller.0.sub,
            spec,
            Expect::Absent,
            now_ms(),
        )
        .await?;
    let view = st.states.get(caller.tenant(), &name).await?;
    let mut body = serde_json::to_value(view).expect("views serialise");
    body["state_id"] = json!(name);
    body["version"] = json!(version);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
