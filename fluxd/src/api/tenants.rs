//! Tenants and their quotas: `GET /v1/tenants` (usage), `GET/PUT /v1/tenants/{tenant}/quota`,
//! and the admission checks `submit_job` runs.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use flux_core::auth::{CLUSTER_TENANT, Role};
use flux_core::model::AgentState;
use flux_core::quota::{self, Quota};
use flux_core::store::{Expect, SYSTEM_TENANT};
use serde::Serialize;

use super::error::{ApiError, ApiResult};
use super::extract::{ApiJson, Caller, quota_precondition};
use crate::state::AppState;

fn over(message: String, retry_after: u64) -> ApiError {
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", message);
    e.retry_after = Some(retry_after.max(1));
    e
}

/// Admission for `n` new jobs (a fan-out submits several): the tenant's queued-jobs quota and
/// submit rate. Answered with 429 and `Retry-After`; nothing is written. The queued count is
/// read before the jobs are written, so concurrent submissions can overshoot it by a few.
pub(super) async fn admit_submission(st: &AppState, tenant: &str, n: u64) -> ApiResult<()> {
    let q = st.quota(tenant).await?;
    if let Some(max) = q.max_queued {
        let queued = st.jobs.queue_depth(tenant).await? as u64;
        if queued + n > max {
            return Err(over(
                format!(
                    "tenant {tenant} has {queued} queued jobs; {n} more would pass its quota of {max}"
                ),
                1,
            ));
        }
    }
    if let Err(wait) = st.rates.take_n(tenant, &q, Instant::now(), n) {
        return Err(over(
            format!(
                "tenant {tenant} submits faster than its quota of {}/s",
                q.submit_per_sec.unwrap_or_default()
            ),
            wait.as_secs_f64().ceil() as u64,
        ));
    }
    Ok(())
}

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
        running: st.store.list(tenant, "inbox/").await?.len(),
        agents_online: agents
            .iter()
            .filter(|a| a.state == AgentState::Online)
            .count(),
        agents: agents.len(),
        states: st.store.list(tenant, "states/").await?.len(),
        quota: quota::get(st.store.as_ref(), tenant).await?.0,
    })
}

/// Every tenant for admins of the cluster tenant; one's own tenant for other admins.
pub(super) async fn list(
    State(st): State<Arc<AppState>>,
    caller: Caller,
) -> ApiResult<Json<Vec<Usage>>> {
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
        for e in st.store.list(SYSTEM_TENANT, "tenants/").await? {
            if let Some(t) = e.key.path().strip_prefix("tenants/") {
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
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    if caller.0.role != Role::Admin || caller.tenant() != CLUSTER_TENANT {
        return Err(ApiError::forbidden(format!(
            "only admins of tenant {CLUSTER_TENANT:?} create tenants"
        )));
    }
    if req.name.starts_with('_') {
        return Err(ApiError::invalid("tenant names may not start with '_'"));
    }
    flux_core::store::validate_tenant(&req.name).map_err(|e| ApiError::invalid(e.to_string()))?;
    let ttl = req.admin_token_ttl_secs.unwrap_or(24 * 3600);
    if ttl == 0 || ttl > 366 * 24 * 3600 {
        return Err(ApiError::invalid(
            "admin_token_ttl_secs must be between 1 and 31622400",
        ));
    }
    if let Some(q) = &req.quota {
        q.validate()?;
    }
    if st.store.tenants().await?.contains(&req.name) {
        return Err(ApiError::conflict(format!(
            "tenant {} already exists",
            req.name
        )));
    }
    let record = flux_core::store::Key::new(SYSTEM_TENANT, format!("tenants/{}", req.name))?;
    let body = serde_json::to_vec(&serde_json::json!({
        "name": req.name, "created_by": caller.0.sub, "created_at": flux_core::model::now_ms()
    }))
    .expect("records serialise");
    // The record and the quota in one transaction: a tenant never exists half made.
    let mut txn = flux_core::store::Txn::new().put(record, body, Expect::Absent);
    if let Some(q) = &req.quota {
        txn = txn.put(
            quota::key(&req.name)?,
            serde_json::to_vec(q).expect("quotas serialise"),
            Expect::Absent,
        );
    }
    st.store.commit(txn).await.map_err(|e| match e {
        flux_core::store::StoreError::Conflict { .. } => {
            ApiError::conflict(format!("tenant {} already exists", req.name))
        }
        other => other.into(),
    })?;
    st.forget_quota(&req.name);
    let (token, claims) = st.auth.issue(
        &format!("{}-admin", req.name),
        &req.name,
        Role::Admin,
        std::time::Duration::from_secs(ttl),
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
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(tenant): Path<String>,
) -> ApiResult<Json<QuotaView>> {
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
    State(st): State<Arc<AppState>>,
    caller: Caller,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    ApiJson(q): ApiJson<Quota>,
) -> ApiResult<Json<QuotaView>> {
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
