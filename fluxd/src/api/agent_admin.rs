//! What operators do to an agent: `POST /v1/agents/{id}/drain` (no new work reaches it; what
//! runs finishes), `POST /v1/agents/{id}/uncordon` (undoes it) and `POST /v1/agents/{id}/revoke`
//! (ends every credential of the agent issued before now, `flux_core::auth::revoke_node`; the
//! agent is refused from its next call and counted dead, so its attempts are requeued). No body;
//! each answers the agent record. Tenant scoped: another tenant's agent is a 404.

use axum::Json;
use axum::extract::Path;
use flux_core::auth::Permission;
use flux_core::jobs::AgentChange;
use flux_core::model::{Agent, now_ms};

use super::extract::{Caller, Ctx};
use crate::error::ApiResult;
use crate::state::AppState;

/// Drains or uncordons (`what`) agent `id` of the caller's tenant: its record, changed.
async fn change(st: &AppState, caller: &Caller, id: &str, what: AgentChange) -> ApiResult<Agent> {
    caller.require(Permission::ManageAgents)?;
    let a = st.jobs.change_agent(caller.tenant(), id, what).await?;
    Ok(a.public_view())
}

pub(super) async fn drain(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(change(&st, &caller, &id, AgentChange::Drain).await?))
}

pub(super) async fn uncordon(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    let a = change(&st, &caller, &id, AgentChange::Uncordon).await?;
    st.wake_scheduler();
    Ok(Json(a))
}

pub(super) async fn revoke(
    Ctx { st, caller }: Ctx,
    Path(id): Path<String>,
) -> ApiResult<Json<Agent>> {
    caller.require(Permission::ManageTokens)?;
    // Unknown (or another tenant's) agents are a 404 before anything is written.
    st.jobs.agent(caller.tenant(), &id).await?;
    let not_before = flux_core::auth::revoke_node(st.store.as_ref(), caller.tenant(), &id).await?;
    // Refused on this node from now on; other nodes learn it from the change stream.
    st.revocations.insert_node(caller.tenant(), &id, not_before);
    let a = st
        .jobs
        .change_agent(caller.tenant(), &id, AgentChange::Revoke { at: now_ms() })
        .await?;
    tracing::info!(by = %caller.0.sub, tenant = %caller.tenant(), node_id = %id, "agent credentials revoked");
    Ok(Json(a.public_view()))
}
