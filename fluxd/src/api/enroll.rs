//! Enrollment routes: `POST /v1/enroll` exchanges an enrollment token (role `enroll`) for the
//! agent's own credential, counting one of the token's uses exactly
//! (`flux_core::enroll::enroll`); `POST /v1/agent/renew` gives an agent a fresh credential for
//! its own node before the one it holds expires. Both answer `{token, claims}`.
//!
//! The enrollment token's role is checked before the body is read (`middleware::access`);
//! registrations' pool and shares bound how many run at once. The credential's lifetime is the
//! node's `--agent-credential-ttl`; tokens are signed with the key every node shares, so a
//! credential from one node is good on all and renewable on any.

use axum::Json;
use axum::http::StatusCode;
use flux_core::auth::{Claims, Permission};
use flux_core::model::now_ms;
use serde::{Deserialize, Serialize};

use super::extract::{ApiJson, Ctx};
use crate::error::ApiResult;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EnrollRequest {
    /// The node id the agent runs as (its host name by default, chosen by the agent).
    node_id: String,
}

#[derive(Serialize)]
pub(super) struct CredentialReply {
    token: String,
    claims: Claims,
    /// Uses of the enrollment token spent so far, and how many it has (enrollment only).
    #[serde(skip_serializing_if = "Option::is_none")]
    used: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    uses: Option<u32>,
}

pub(super) async fn enroll(
    Ctx { st, caller }: Ctx,
    ApiJson(req): ApiJson<EnrollRequest>,
) -> ApiResult<(StatusCode, Json<CredentialReply>)> {
    caller.require(Permission::Enroll)?;
    let e = flux_core::enroll::enroll(
        st.store.as_ref(),
        &st.auth,
        &caller.0,
        &req.node_id,
        st.agent_credential_ttl,
        now_ms(),
    )
    .await
    .inspect_err(|e| {
        let result = match e {
            flux_core::enroll::EnrollError::UsedUp { .. } => "used_up",
            _ => "refused",
        };
        st.metrics.enrollments.with_label_values(&[result]).inc();
    })?;
    st.metrics.enrollments.with_label_values(&["ok"]).inc();
    tracing::info!(tenant = %caller.0.tenant, node_id = %req.node_id, enrollment = %caller.0.jti,
        used = e.counter.used, uses = e.counter.uses, jti = %e.claims.jti, "agent enrolled");
    Ok((
        StatusCode::CREATED,
        Json(CredentialReply {
            token: e.token,
            claims: e.claims,
            used: Some(e.counter.used),
            uses: Some(e.counter.uses),
        }),
    ))
}

pub(super) async fn renew(Ctx { st, caller }: Ctx) -> ApiResult<Json<CredentialReply>> {
    caller.node_id()?;
    let (token, claims) = flux_core::enroll::renew(&st.auth, &caller.0, st.agent_credential_ttl)?;
    st.metrics.renewals.inc();
    tracing::info!(tenant = %claims.tenant, node_id = ?claims.node_id, old = %caller.0.jti, jti = %claims.jti, "agent credential renewed");
    Ok(Json(CredentialReply {
        token,
        claims,
        used: None,
        uses: None,
    }))
}
