//! Agent inventory routes: `GET /v1/agents[?selector=EXPR]` and `GET /v1/agents/{id}` (the
//! tenant's agents with their liveness state, labels, admin labels and facts; `last_seen` may
//! lag by one liveness publication interval), and `POST /v1/agents/{id}/labels` (admins: set
//! and remove admin labels).

use axum::Json;
use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use flux_core::auth::Permission;

use flux_core::model::LabelAgent;
use flux_core::selector::Selector;
use serde::Deserialize;

use super::extract::{ApiJson, ApiQuery, Ctx};
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    /// Only the agents this selector matches (what a job or state with it would consider).
    selector: Option<String>,
}

pub(super) async fn list_agents(
    Ctx { st, caller }: Ctx,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    caller.require(Permission::ReadAgents)?;
    let selector = match q.selector.as_deref() {
        Some(expr) => {
            Selector::parse(expr).map_err(|e| ApiError::invalid(format!("selector: {e}")))?
        }
        None => Selector::default(),
    };
    let agents: Vec<_> = st
        .jobs
        .agents_seen(caller.tenant())
        .await?
        .into_iter()
        .filter(|a| selector.matches(a))
        .map(|a| a.public_view())
        .collect();
    Ok(Json(agents).into_response())
}

pub(super) async fn get_agent(
    Ctx { st, caller }: Ctx,
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

/// Sets and removes admin labels. Admins only (checked before the body is read, by the route
/// table); the body is bounded by the API's body limit and by [`LabelAgent::apply`].
pub(super) async fn label_agent(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
    ApiJson(change): ApiJson<LabelAgent>,
) -> ApiResult<Response> {
    Ok(Json(
        st.jobs
            .label_agent(caller.tenant(), &id, &change)
            .await?
            .public_view(),
    )
    .into_response())
}
