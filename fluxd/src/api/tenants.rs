//! Tenants and their quotas: `GET /v1/tenants` (usage), `GET/PUT /v1/tenants/{tenant}/quota`,
//! and `POST /v1/tenants` (creation). The rules are `flux_core::tenants` and `flux_core::quota`;
//! the admission of submissions is `api::jobs`.

use axum::Json;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use flux_core::auth::{CLUSTER_TENANT, Role};
use flux_core::keys;
use flux_core::model::AgentState;
use flux_core::quota::{self, Quota};
use flux_core::store::SYSTEM_TENANT;
use flux_core::tenants;
use serde::Serialize;

use super::extract::{ApiJson, Caller, Ctx, quota_precondition};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

#[derive(Serialize)]
pub(super) struct Usage {
    tenant: String,
    queued: usize,
    /// Attempts assigned to or running on agents.
    running: usize,
    agents_online: usize,
    agents: usize,
    states: usize,
    quota: Quota,
}

async fn usage(st: &AppState, tenant: &str) -> ApiResult<Usage> {
    let agents = st.jobs.agents(tenant).await?;
    Ok(Usage {
        tenant: tenant.to_string(),
        queued: st.jobs.queue_depth(tenant).await?,
        running: st.store.list(tenant, keys::INBOX).await?.len(),
        agents_online: agents
            .iter()
            .filter(|a| a.state == AgentState::Online)
            .count(),
        agents: agents.len(),
        states: st.store.list(tenant, keys::STATES).await?.len(),
        quota: quota::get(st.store.as_ref(), tenant).await?.0,
    })
}

/// Every tenant for admins of the cluster tenant; one's own tenant for other admins.
pub(super) async fn list(Ctx { st, caller }: Ctx) -> ApiResult<Json<Vec<Usage>>> {
    if caller.0.role != Role::Admin {
        return Err(ApiError::forbidden("only admins see tenants"));
    }
    let tenants = if caller.tenant() == CLUSTER_TENANT {
        // Tenants with objects, and tenants created before they had any.
        let mut all: std::collections::BTreeSet<String> = st
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| t != SYSTEM_TENANT)
            .collect();
        for e in st.store.list(SYSTEM_TENANT, keys::TENANTS).await? {
            if let Some(t) = e.key.path().strip_prefix(keys::TENANTS) {
                all.insert(t.to_string());
            }
        }
        all.into_iter().collect()
    } else {
        vec![caller.tenant().to_string()]
    };
    let mut out = Vec::new();
    for t in tenants {
        out.push(usage(&st, &t).await?);
    }
    Ok(Json(out))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    name: String,
    #[serde(default)]
    quota: Option<Quota>,
    /// Lifetime of the first admin token (default one day).
    #[serde(default)]
    admin_token_ttl_secs: Option<u64>,
}

/// Creates a tenant (admins of the cluster tenant): records it, sets its quota if given, and
/// answers with a first admin token for it. 409 if it exists.
pub(super) async fn create(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if caller.0.role != Role::Admin || caller.tenant() != CLUSTER_TENANT {
        return Err(ApiError::forbidden(format!(
            "only admins of tenant {CLUSTER_TENANT:?} create tenants"
        )));
    }
    tenants::validate_name(&req.name)?;
    let ttl = tenants::admin_token_ttl(req.admin_token_ttl_secs)?;
    tenants::create(
        st.store.as_ref(),
        &req.name,
        req.quota.as_ref(),
        &caller.0.sub,
        flux_core::model::now_ms(),
    )
    .await?;
    st.forget_quota(&req.name);
    let (token, claims) = st.auth.issue(
        &format!("{}-admin", req.name),
        &req.name,
        Role::Admin,
        ttl,
        None,
    )?;
    tracing::info!(by = %caller.0.sub, tenant = %req.name, jti = %claims.jti, "tenant created");
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"tenant": req.name, "admin_token": token, "claims": claims})),
    ))
}

fn may_read(caller: &Caller, tenant: &str) -> ApiResult<()> {
    if caller.0.role == Role::Admin && caller.0.may_administer(tenant) {
        Ok(())
    } else if caller.0.role == Role::Admin {
        Err(ApiError::not_found(format!("tenant {tenant} not found")))
    } else {
        Err(ApiError::forbidden("only admins read quotas"))
    }
}

#[derive(Serialize)]
pub(super) struct QuotaView {
    tenant: String,
    /// 0 when never set.
    version: u64,
    quota: Quota,
}

pub(super) async fn get_quota(
    Ctx { st, caller }: Ctx,
    Path(tenant): Path<String>,
) -> ApiResult<Json<QuotaView>> {
    tenants::bound_name(&tenant)?;
    may_read(&caller, &tenant)?;
    let (quota, version) = quota::get(st.store.as_ref(), &tenant).await?;
    Ok(Json(QuotaView {
        tenant,
        version: version.unwrap_or(0),
        quota,
    }))
}

/// Quotas bound a tenant, so only admins of the cluster tenant set them. `If-Match: <version>`
/// (0 for "never set") makes the write a CAS.
pub(super) async fn put_quota(
    Ctx { st, caller }: Ctx,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    ApiJson(q): ApiJson<Quota>,
) -> ApiResult<Json<QuotaView>> {
    tenants::bound_name(&tenant)?;
    may_read(&caller, &tenant)?;
    if caller.tenant() != CLUSTER_TENANT {
        return Err(ApiError::forbidden(format!(
            "only admins of tenant {CLUSTER_TENANT:?} set quotas"
        )));
    }
    if tenant.starts_with('_') {
        return Err(ApiError::invalid("tenant names may not start with '_'"));
    }
    let expect = quota_precondition(&headers)?;
    let version = quota::put(st.store.as_ref(), &tenant, &q, expect).await?;
    st.forget_quota(&tenant);
    tracing::info!(by = %caller.0.sub, %tenant, ?q, "quota set");
    Ok(Json(QuotaView {
        tenant,
        version,
        quota: q,
    }))
}
