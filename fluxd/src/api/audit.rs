//! Audit routes: `GET /v1/audit` (a tenant's trail, paged by sequence number),
//! `GET /v1/audit/verify` (its hash chain checked), `POST /v1/audit/export` (its oldest
//! records as a signed file, which lets `--audit-retention` prune them) and
//! `POST /v1/audit/verify-file` (such a file checked). The records are written by
//! `middleware::audit`; the leader's periodic check and pruning are `tasks::integrity`.

use axum::Json;
use axum::body::Bytes;
use flux_core::audit::{ExportCheck, ExportFile, Record, Verification, Walk};
use flux_core::auth::{self, Role};
use flux_core::model::now_ms;
use serde::Deserialize;

use super::extract::{ApiQuery, Caller, Ctx};
use crate::error::{ApiError, ApiResult};

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
    Ctx { st, caller }: Ctx,
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
    Ctx { st, caller }: Ctx,
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
        out.push(st.audit.verify_tracked(&t, Walk::Full).await?);
    }
    Ok(Json(out))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExportQuery {
    /// Records made before this time (ms since the epoch) are exported.
    before: u64,
    /// Start after this record instead of after the last export.
    after: Option<u64>,
    tenant: Option<String>,
}

/// Exports the tenant's records made before `before` and moves its export mark (the records
/// up to it may then be pruned by `--audit-retention`).
pub(super) async fn export(
    Ctx { st, caller }: Ctx,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Json<ExportFile>> {
    let tenant = tenant_for(&caller, q.tenant)?;
    let now = now_ms();
    if q.before > now {
        return Err(ApiError::invalid("before: must not be in the future"));
    }
    Ok(Json(
        st.audit.export(&tenant, q.after, q.before, now).await?,
    ))
}

/// Checks an export file made by this cluster; exported records of other tenants are shown
/// only to admins of those tenants.
pub(super) async fn verify_file(
    Ctx { st, caller }: Ctx,
    body: Bytes,
) -> ApiResult<Json<ExportCheck>> {
    if caller.0.role != auth::Role::Admin {
        return Err(ApiError::forbidden("only admins read the audit log"));
    }
    let audit = st.audit.clone();
    let check = tokio::task::spawn_blocking(move || audit.check_export(&body))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::invalid(format!("body: {e}")))?;
    if let Some(t) = &check.tenant
        && !caller.0.may_administer(t)
    {
        return Err(ApiError::not_found(format!("tenant {t} not found")));
    }
    Ok(Json(check))
}
