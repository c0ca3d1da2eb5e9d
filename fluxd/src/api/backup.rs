//! Backup routes: `GET /v1/backup` (the whole store as NDJSON, signed with this cluster's
//! backup key), `POST /v1/backup/verify` (a file authenticated without restoring it) and
//! `POST /v1/backup/restore`. They move the whole store, so `api::app` gives them their own body
//! and time limits. Scheduled backups are `tasks::backups`.
//!
//! A backup signed by another cluster is accepted only with that cluster's backup key in the
//! `X-Flux-Backup-Key` header (64 hex digits; `fluxctl backup restore --backup-key` derives it
//! from that cluster's signing key file).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use flux_core::auth::{CLUSTER_TENANT, Role};
use flux_core::backup::{self, Backup, BackupError, BackupKey, RestoreReport};
use flux_core::model::now_ms;
use serde::Deserialize;

use super::extract::{ApiQuery, Caller, Ctx};
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// Time limit of the backup routes, instead of the API's usual one.
pub const BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

/// Backups cover every tenant, so only admins of the cluster tenant may take or restore them.
fn cluster_admin(caller: &Caller) -> ApiResult<()> {
    if caller.0.role == Role::Admin && caller.tenant() == CLUSTER_TENANT {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "backups cover every tenant: only admins of tenant {CLUSTER_TENANT:?} may take or restore them"
        )))
    }
}

pub(super) async fn create(Ctx { st, caller }: Ctx) -> ApiResult<Response> {
    cluster_admin(&caller)?;
    let snap = st.store.snapshot().await.map_err(BackupError::from)?;
    let backend = st.store.backend();
    let key = st.audit.backup_key();
    let bytes = tokio::task::spawn_blocking(move || backup::encode(&snap, backend, now_ms(), &key))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    tracing::info!(by = %caller.0.sub, bytes = bytes.len(), "backup taken");
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Bytes::from(bytes),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RestoreQuery {
    #[serde(default)]
    force: bool,
}

/// Header naming the backup key of another cluster.
pub const BACKUP_KEY_HEADER: &str = "x-flux-backup-key";

/// The key to check a backup with: this cluster's, or the one the caller names explicitly.
fn key_for(st: &AppState, headers: &HeaderMap) -> ApiResult<(BackupKey, bool)> {
    match headers.get(BACKUP_KEY_HEADER) {
        None => Ok((st.audit.backup_key(), false)),
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .and_then(|v| BackupKey::from_hex(v).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "header {BACKUP_KEY_HEADER} must be a backup key: 64 hex digits"
                    ))
                })?;
            Ok((k, true))
        }
    }
}

/// Parses and authenticates `body` off the async runtime.
async fn authenticate(body: Bytes, key: BackupKey) -> ApiResult<Backup> {
    Ok(
        tokio::task::spawn_blocking(move || backup::decode(&body, &key))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??,
    )
}

pub(super) async fn verify(
    Ctx { st, caller }: Ctx,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    cluster_admin(&caller)?;
    let (key, _) = key_for(&st, &headers)?;
    let b = authenticate(body, key).await?;
    // The backup's header and size, authenticated.
    let mut summary = b.summary();
    summary["ok"] = true.into();
    let mut resp = Json(summary).into_response();
    crate::middleware::audit::mark_unchanged(&mut resp);
    Ok(resp)
}

pub(super) async fn restore(
    Ctx { st, caller }: Ctx,
    ApiQuery(q): ApiQuery<RestoreQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<RestoreReport>> {
    cluster_admin(&caller)?;
    let (key, foreign) = key_for(&st, &headers)?;
    let b = authenticate(body, key.clone()).await?;
    // Chains the restore shortens are told apart from a store rewritten behind our back by
    // the restore mark written in the same step.
    let mark = st.audit.next_restore_mark(&b, now_ms()).await?;
    let report = backup::restore(st.store.as_ref(), b, q.force, vec![mark]).await?;
    tracing::warn!(by = %caller.0.sub, jti = %caller.0.jti, objects = report.objects, epoch = report.epoch, key_id = %key.id(), foreign_key = foreign, "store restored from a backup; leaders elected before now are fenced");
    Ok(Json(report))
}
