//! Agent inventory routes: `GET /v1/agents` and `GET /v1/agents/{id}` (the tenant's agents
//! with their liveness state; `last_seen` may lag by one liveness publication interval).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use flux_core::auth::Permission;

use super::extract::Caller;
use crate::error::ApiResult;
use crate::state::AppState;

pub(super) async fn list_agents(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Response> {
    caller.require(Permission::ReadAgents)?;
    let agents: Vec<_> = st
        .jobs
        .agents_seen(caller.tenant())
        .await?
        .into_iter()
        .map(|a| a.public_view())
        .collect();
    Ok(Json(agents).into_response())
}

pub(super) async fn get_agent(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadAgents)?;
    Ok(Json(
        st.jobs
            .agent_seen(caller.tenant(), &id)
            .await?
            .public_view(),
    )
    .into_response())
}
