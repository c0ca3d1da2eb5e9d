//! Desired-state routes: `GET/POST /v1/states`, `GET/PUT/DELETE /v1/states/{name}` and the
//! seed-compatible `POST /states`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flux_core::auth::Permission;
use flux_core::model::now_ms;
use flux_core::reconcile::{ApplyRequest, Plan, StateError, StateView};
use flux_core::state::{DEFAULT_INTERVAL_SECS, DEFAULT_TIMEOUT_SECS, StateSpec, Targets};
use flux_core::store::Expect;
use serde::Deserialize;
use serde_json::json;

use crate::api::{ApiError, ApiJson, ApiResult, Caller};
use crate::app::AppState;

impl From<StateError> for ApiError {
    fn from(e: StateError) -> ApiError {
        match e {
            StateError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            StateError::Invalid(m) => ApiError::invalid(m),
            StateError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            StateError::PreconditionFailed(m) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, "precondition_failed", m)
            }
            StateError::Store(s) => s.into(),
            StateError::Jobs(j) => j.into(),
            StateError::Corrupt { .. } => {
                tracing::error!(error = %e, "corrupt object");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "corrupt object in store",
                )
            }
        }
    }
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/states", post(seed_create))
        .route("/v1/states", get(list).post(apply))
        .route(
            "/v1/states/{name}",
            get(get_one).put(put_one).delete(delete_one),
        )
}

/// `If-Match: <version>` (quotes allowed) or `If-None-Match: *`; neither means "any".
fn precondition(headers: &HeaderMap) -> ApiResult<Expect> {
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

async fn list(State(st): State<Arc<AppState>>, caller: Caller) -> ApiResult<Json<Vec<StateView>>> {
    caller.require(Permission::ReadStates)?;
    Ok(Json(st.states.list(caller.tenant()).await?))
}

async fn get_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<StateView>> {
    caller.require(Permission::ReadStates)?;
    Ok(Json(st.states.get(caller.tenant(), &name).await?))
}

async fn apply(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<ApplyRequest>,
) -> ApiResult<Json<Plan>> {
    if req.dry_run {
        caller.require(Permission::ReadStates)?;
    } else {
        caller.require(Permission::ManageStates)?;
    }
    let plan = st
        .states
        .apply(caller.tenant(), &caller.0.sub, req, now_ms())
        .await?;
    if !plan.dry_run && plan.has_changes() {
        tracing::info!(by = %caller.0.sub, tenant = %caller.tenant(), changes = plan.items.len(), "states applied");
    }
    Ok(Json(plan))
}

async fn put_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(spec): ApiJson<StateSpec>,
) -> ApiResult<Response> {
    caller.require(Permission::ManageStates)?;
    if spec.name != name {
        return Err(ApiError::invalid(format!(
            "the body names state {:?} but the path names {name:?}",
            spec.name
        )));
    }
    let expect = precondition(&headers)?;
    let (_, created) = st
        .states
        .put(caller.tenant(), &caller.0.sub, spec, expect, now_ms())
        .await?;
    let view = st.states.get(caller.tenant(), &name).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let version = view.version.to_string();
    Ok((code, [("x-flux-version", version)], Json(view)).into_response())
}

async fn delete_one(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ManageStates)?;
    let expect = precondition(&headers)?;
    if expect == Expect::Absent {
        return Err(ApiError::bad_request(
            "If-None-Match makes no sense on delete",
        ));
    }
    let v = st.states.delete(caller.tenant(), &name, expect).await?;
    Ok(Json(json!({"deleted": name, "version": v})))
}

/// The seed's `POST /states` body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedState {
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

async fn seed_create(
    State(st): State<Arc<AppState>>,
    caller: Caller,
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
