//! Cluster routes: `/healthz` (the process answers), `/readyz` (the store answers),
//! `/metrics` (Prometheus text, rendered from the registry; a token of the cluster tenant) and
//! `/v1/status`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flux_core::auth::{CLUSTER_TENANT, Permission};
use serde_json::json;

use super::extract::{Caller, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::state::AppState;

pub(super) async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Ready while the store answers and can commit: a store that cannot write (a full disk, Redis
/// refusing writes) answers 503 with the reason, so a load balancer sends traffic elsewhere;
/// the store retries on its own and readiness comes back with it.
pub(super) async fn readyz(State(st): State<Arc<AppState>>) -> ApiResult<Json<serde_json::Value>> {
    let unwritable = st.store.unwritable();
    st.metrics
        .store_writable
        .set(i64::from(unwritable.is_none()));
    if let Some(why) = unwritable {
        return Err(ApiError::unavailable(format!(
            "the store cannot commit writes: {why}"
        )));
    }
    st.store.current_epoch().await?;
    Ok(Json(json!({"status": "ready"})))
}

/// `/metrics` on the API listener: for tokens of the cluster tenant with a read role (the
/// figures cover every tenant). Renders the registry only; nothing is read from the store.
pub(super) async fn metrics(Ctx { st, caller }: Ctx) -> ApiResult<Response> {
    metrics_reader(&caller)?;
    Ok(render_metrics(&st.metrics))
}

/// Who may read `/metrics` through the API: viewers, operators and admins of the cluster
/// tenant.
fn metrics_reader(caller: &Caller) -> ApiResult<()> {
    if caller.tenant() == CLUSTER_TENANT && caller.0.role.allows(Permission::ReadCluster) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "metrics cover every tenant: only viewers, operators and admins of tenant {CLUSTER_TENANT:?} may read them"
        )))
    }
}

/// The Prometheus text of `metrics`.
pub fn render_metrics(metrics: &Metrics) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
        .into_response()
}

pub(super) async fn status(Ctx { st, caller }: Ctx) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ReadCluster)?;
    let agents = st.jobs.agents(caller.tenant()).await?;
    let mut by_state: HashMap<&str, usize> = HashMap::new();
    for a in &agents {
        *by_state.entry(a.state.as_str()).or_default() += 1;
    }
    let leader = st.leader.snapshot();
    let holder = st.store.lease_holder().await?;
    let nodes = crate::tasks::node_record::live_nodes(&st).await?;
    Ok(Json(json!({
        "node_id": st.node_id,
        "store": st.store.backend(),
        "leader": leader.is_leader,
        "epoch": leader.epoch,
        "leader_node": holder.as_ref().map(|(h, _)| h.split_once('/').map_or(h.as_str(), |(n, _)| n).to_string()),
        "leader_epoch": holder.as_ref().map(|(_, e)| *e),
        "nodes": nodes,
        "store_epoch": st.store.current_epoch().await?,
        "agents": by_state,
        "queue_depth": st.jobs.queue_depth(caller.tenant()).await?,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}
