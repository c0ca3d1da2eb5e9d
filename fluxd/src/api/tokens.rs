//! Token routes: `POST /v1/tokens` (issue), `POST /v1/tokens/revoke` and `GET /v1/whoami`.

use std::time::Duration;

use axum::Json;
use axum::http::StatusCode;
use flux_core::auth::{self, Claims, Permission, Role};
use flux_core::model::{now_ms, valid_ident};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::extract::{ApiJson, Caller, Ctx};
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateToken {
    tenant: Option<String>,
    role: Role,
    ttl_secs: Option<u64>,
    node_id: Option<String>,
    subject: Option<String>,
    /// Enrollment tokens: how many agents may enroll with it (1 to `enroll::MAX_USES`).
    uses: Option<u32>,
    /// Enrollment tokens: admin labels of the agents enrolled with it.
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
pub(super) struct TokenReply {
    token: String,
    claims: Claims,
}

/// Longest token accepted for revocation (ours are well under 1 KiB).
const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Longest token lifetime accepted (one year).
const MAX_TTL_SECS: u64 = 366 * 24 * 3600;

pub(super) async fn create_token(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<CreateToken>,
) -> ApiResult<(StatusCode, Json<TokenReply>)> {
    caller.require(Permission::ManageTokens)?;
    let tenant = req.tenant.unwrap_or_else(|| caller.tenant().to_string());
    if !caller.0.may_administer(&tenant) {
        return Err(ApiError::forbidden(format!(
            "only admins of tenant {:?} or of {tenant:?} may issue tokens for {tenant:?}",
            auth::CLUSTER_TENANT
        )));
    }
    flux_core::tenants::validate_name(&tenant)?;
    let ttl = req.ttl_secs.unwrap_or(24 * 3600);
    if ttl == 0 || ttl > MAX_TTL_SECS {
        return Err(ApiError::invalid(format!(
            "ttl must be between 1 s and {MAX_TTL_SECS} s"
        )));
    }
    if let Some(n) = &req.node_id
        && !valid_ident(n)
    {
        return Err(ApiError::invalid(
            "node_id must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'",
        ));
    }
    if req.role == Role::Agent && req.node_id.is_none() {
        return Err(ApiError::invalid("an agent token needs a node id"));
    }
    if req.role == Role::Enroll {
        use flux_core::enroll::{MAX_ENROLL_TTL_SECS, MAX_USES};
        if req.node_id.is_some() {
            return Err(ApiError::invalid(
                "node_id: an enrollment token is not bound to a node (each agent gives its own)",
            ));
        }
        let uses = match req.uses {
            Some(u) if (1..=MAX_USES).contains(&u) => u,
            _ => {
                return Err(ApiError::invalid(format!(
                    "uses: an enrollment token needs 1 to {MAX_USES} uses"
                )));
            }
        };
        if ttl > MAX_ENROLL_TTL_SECS {
            return Err(ApiError::invalid(format!(
                "ttl: an enrollment token lasts at most {MAX_ENROLL_TTL_SECS} s"
            )));
        }
        flux_core::enroll::validate_labels(&req.labels).map_err(ApiError::invalid)?;
        let subject = req
            .subject
            .unwrap_or_else(|| format!("enroll-{}", uuid_short()));
        auth::validate_subject(&subject).map_err(ApiError::invalid)?;
        let (token, claims) = st.auth.issue_enrollment(
            &subject,
            &tenant,
            Duration::from_secs(ttl),
            uses,
            req.labels,
        )?;
        tracing::info!(by = %caller.0.sub, sub = %claims.sub, tenant = %claims.tenant, uses, jti = %claims.jti, "enrollment token issued");
        return Ok((StatusCode::CREATED, Json(TokenReply { token, claims })));
    }
    if req.uses.is_some() || !req.labels.is_empty() {
        return Err(ApiError::invalid(
            "uses: only enrollment tokens (role enroll) carry uses and labels",
        ));
    }
    let subject = req
        .subject
        .or_else(|| req.node_id.clone())
        .unwrap_or_else(|| format!("{}-{}", req.role, &uuid_short()));
    // The subject becomes the audit actor and `submitted_by`, and is logged: identifier
    // characters only, and never one of the system's own.
    auth::validate_subject(&subject).map_err(ApiError::invalid)?;
    let (token, claims) = st.auth.issue(
        &subject,
        &tenant,
        req.role,
        Duration::from_secs(ttl),
        req.node_id.as_deref(),
    )?;
    tracing::info!(by = %caller.0.sub, sub = %claims.sub, tenant = %claims.tenant, role = %claims.role, jti = %claims.jti, "token issued");
    Ok((StatusCode::CREATED, Json(TokenReply { token, claims })))
}

fn uuid_short() -> String {
    format!("{:08x}", rand::random::<u32>())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RevokeToken {
    /// The token itself, or its `jti` (then `tenant` and `exp` are taken as given).
    token: Option<String>,
    jti: Option<String>,
    exp: Option<u64>,
    /// Tenant of the token named by `jti` (default: the caller's).
    tenant: Option<String>,
}

pub(super) async fn revoke_token(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<RevokeToken>,
) -> ApiResult<Json<serde_json::Value>> {
    caller.require(Permission::ManageTokens)?;
    let (jti, tenant, exp) = match (req.token, req.jti) {
        (Some(t), None) => {
            if t.len() > MAX_TOKEN_BYTES {
                return Err(ApiError::invalid(format!(
                    "token is {} bytes; at most {MAX_TOKEN_BYTES}",
                    t.len()
                )));
            }
            let c = st
                .auth
                .verify(&t)
                .map_err(|e| ApiError::invalid(format!("cannot revoke: {e}")))?;
            (c.jti, c.tenant, c.exp)
        }
        (None, Some(j)) => {
            if !valid_ident(&j) {
                return Err(ApiError::invalid("jti is not valid"));
            }
            let exp = req.exp.unwrap_or(now_ms() / 1000 + MAX_TTL_SECS);
            let tenant = req.tenant.unwrap_or_else(|| caller.tenant().to_string());
            flux_core::tenants::validate_name(&tenant)?;
            (j, tenant, exp)
        }
        _ => return Err(ApiError::invalid("give either token or jti")),
    };
    if !caller.0.may_administer(&tenant) {
        // Same answer as for an unknown object: another tenant's tokens are not visible.
        return Err(ApiError::not_found("token not found"));
    }
    auth::revoke(st.store.as_ref(), &jti, &tenant, exp).await?;
    // Refused on this node from now on; other nodes learn it from the change stream.
    st.revocations.insert(&tenant, &jti, exp);
    tracing::info!(by = %caller.0.sub, %jti, "token revoked");
    Ok(Json(json!({"revoked": jti})))
}

pub(super) async fn whoami(caller: Caller) -> Json<Claims> {
    Json(caller.0)
}
