//! Backup routes: `GET /v1/backup` (the whole store as NDJSON) and `POST /v1/backup/restore`.
//! They move the whole store, so `api::app` gives them their own body and time limits.
//! Scheduled backups are `tasks::backups`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flux_core::auth::{CLUSTER_TENANT, Role};
use flux_core::backup::{self, BackupError, RestoreReport};
use flux_core::model::now_ms;
use serde::Deserialize;

use super::extract::{ApiQuery, Caller};
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

pub(super) async fn create(State(st): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    cluster_admin(&caller)?;
    let snap = st.store.snapshot().await.map_err(BackupError::from)?;
    let backend = st.store.backend();
    let bytes = tokio::task::spawn_blocking(move || backup::encode(&snap, backend, now_ms()))
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

pub(super) async fn restore(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RestoreQuery>,
    body: Bytes,
) -> ApiResult<Json<RestoreReport>> {
    cluster_admin(&caller)?;
    let b = tokio::task::spawn_blocking(move || backup::decode(&body))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let report = backup::restore(st.store.as_ref(), b, q.force).await?;
    tracing::warn!(by = %caller.0.sub, objects = report.objects, epoch = report.epoch, "store restored from a backup; leaders elected before now are fenced");
    Ok(Json(report))
}
