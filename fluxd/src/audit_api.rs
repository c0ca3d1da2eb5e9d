//! The audit trail of the API: a middleware that appends every successful mutating call to the
//! caller's tenant's hash chain before the answer leaves, the `/v1/audit` routes, and the
//! leader's periodic integrity check.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use flux_core::audit::{AuditError, Checkpoint, Event, Record, Verification};
use flux_core::auth::{self, Role};
use flux_core::model::now_ms;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, ApiQuery, ApiResult, Caller};
use crate::app::AppState;

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> ApiError {
        match e {
            AuditError::Store(s) => s.into(),
            other => {
                let mut err = ApiError::new(
                    axum::http::StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    other.to_string(),
                );
                err.retry_after = Some(1);
                err
            }
        }
    }
}

/// Which calls are recorded. Agent-protocol calls other than registration are the machinery of
/// jobs already audited (their submission and cancellation); recording every heartbeat would
/// drown the trail.
fn audited(method: &Method, route: &str) -> bool {
    let mutating = matches!(
        *method,
        Method::POST | Method::PUT | Method::DELETE | Method::PATCH
    ) && (!route.starts_with("/v1/agent/") || route == "/v1/agent/register");
    // Taking a backup copies every tenant's data: that is worth a record too.
    mutating || (*method == Method::GET && route == "/v1/backup")
}

/// Appends successful mutating calls to the audit log. The answer waits for the record to be
/// durable.
pub async fn record(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let Some(route) = route.filter(|r| audited(&method, r)) else {
        return next.run(req).await;
    };
    let object = req.uri().path().to_string();
    // The handler verifies the token; here it only names the actor of a call that succeeded.
    let claims = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| auth::bearer(v).ok())
        .and_then(auth::peek_claims);
    let resp = next.run(req).await;
    let Some(claims) = claims.filter(|_| resp.status().is_success()) else {
        return resp;
    };
    let version = resp
        .headers()
        .get("x-flux-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let event = Event {
        at: now_ms(),
        actor: claims.sub,
        tenant: claims.tenant,
        action: format!("{method} {route}"),
        object,
        status: resp.status().as_u16(),
        version,
    };
    // The call's effect is committed whatever happens here: answering an error would make a
    // client retry (and, say, submit a job twice). A record that cannot be written is logged
    // with what it would have said, counted (`flux_audit_append_failures_total`), and the gap
    // it leaves is not silent.
    if let Err(e) = st.audit.append(event.clone()).await {
        st.metrics.audit_failures.inc();
        tracing::error!(error = %e, actor = %event.actor, tenant = %event.tenant, action = %event.action, object = %event.object, "audit record not written");
    }
    resp
}

pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/audit", get(log))
        .route("/v1/audit/verify", get(verify))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
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

async fn log(
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
struct VerifyQuery {
    tenant: Option<String>,
    /// Every tenant (admins of the cluster tenant only).
    #[serde(default)]
    all: bool,
}

async fn verify(
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
        st.store.tenants().await?
    } else {
        vec![tenant_for(&caller, q.tenant)?]
    };
    let mut out = Vec::new();
    for t in tenants {
        out.push(st.audit.verify(&t, None).await?);
    }
    Ok(Json(out))
}

/// While this node leads, verifies every tenant's chain every `every`; each broken chain found
/// counts in `flux_integrity_mismatch_total` (the `IntegrityMismatch` alert).
pub async fn run_integrity_checks(st: Arc<AppState>, every: Duration, cancel: CancellationToken) {
    // The last good point of each chain: a chain cut back together with its head is caught
    // against it.
    let mut checkpoints: std::collections::HashMap<String, Checkpoint> = Default::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !st.leader.snapshot().is_leader {
            continue;
        }
        let tenants = match st.store.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "integrity check: cannot list tenants");
                continue;
            }
        };
        for t in tenants {
            match st.audit.verify(&t, checkpoints.get(&t)).await {
                Ok(v) if v.ok => {
                    if let Some(c) = v.checkpoint {
                        checkpoints.insert(t, c);
                    }
                }
                Ok(v) => {
                    tracing::error!(tenant = %t, problem = ?v.problem, "audit log integrity check failed");
                    st.metrics.integrity_mismatch.inc();
                }
                Err(e) => tracing::warn!(tenant = %t, error = %e, "integrity check could not run"),
            }
        }
        st.metrics.integrity_checks.inc();
    }
}
