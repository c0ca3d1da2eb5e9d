//! Audit routes: `GET /v1/audit` (a tenant's trail) and `GET /v1/audit/verify` (its hash
//! chain checked). The records are written by `middleware::audit`; the leader's periodic
//! check is `tasks::integrity`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use flux_core::audit::{Record, Verification};
use flux_core::auth::{self, Role};
use serde::Deserialize;

use super::extract::{ApiQuery, Caller};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogQuery {
    after: Option<u64>,
    limit: Option<usize>,
    tenant: Option<String>,
}

/// Admins read their tenant's trail; admins of the cluster tenant may name any tenant.
fn tenant_for(caller: &Caller, asked: Option<String>) -> ApiResult<String> {
    if caller.0.role != Role::Admin {
        return Err(ApiError::forbidden("only admins read the audit log"));
    }
    let tenant = asked.unwrap_or_else(|| caller.tenant().to_string());
    if !caller.0.may_administer(&tenant) {
        return Err(ApiError::not_found(format!("tenant {tenant} not found")));
    }
    flux_core::store::validate_tenant(&tenant).map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(tenant)
}

pub(super) async fn log(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> ApiResult<Json<Vec<Record>>> {
    let tenant = tenant_for(&caller, q.tenant)?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(Json(
        st.audit
            .records(&tenant, q.after.unwrap_or(0), limit)
            .await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VerifyQuery {
    tenant: Option<String>,
    /// Every tenant (admins of the cluster tenant only).
    #[serde(default)]
    all: bool,
}

pub(super) async fn verify(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<VerifyQuery>,
) -> ApiResult<Json<Vec<Verification>>> {
    let tenants = if q.all {
        let t = tenant_for(&caller, Some(auth::CLUSTER_TENANT.to_string()))?;
        if t != auth::CLUSTER_TENANT || caller.tenant() != auth::CLUSTER_TENANT {
            return Err(ApiError::forbidden(
                "all=true is for admins of the cluster tenant",
            ));
        }
        let mut all = st.store.tenants().await?;
        // A tenant whose every object was removed from the store is still checked.
        all.extend(st.audit.tracked_tenants());
        all.sort();
        all.dedup();
        all
    } else {
        vec![tenant_for(&caller, q.tenant)?]
    };
    let mut out = Vec::new();
    for t in tenants {
        out.push(st.audit.verify_tracked(&t).await?);
    }
    Ok(Json(out))
}
