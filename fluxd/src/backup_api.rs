//! Backup routes (`GET /v1/backup`, `POST /v1/backup/restore`) and scheduled backups.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flux_core::auth::{CLUSTER_TENANT, Role};
use flux_core::backup::{self, BackupError, RestoreReport};
use flux_core::model::now_ms;
use flux_core::store::StoreError;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::api::{ApiError, ApiQuery, ApiResult, Caller};
use crate::app::AppState;

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> ApiError {
        match e {
            BackupError::Store(StoreError::NotEmpty(n)) => ApiError::new(
                StatusCode::CONFLICT,
                "not_empty",
                format!("the store already holds {n} objects; restore with force to replace them"),
            ),
            BackupError::Store(s) => s.into(),
            other => ApiError::invalid(format!("not a valid backup: {other}")),
        }
    }
}

pub fn routes(max_restore_bytes: usize) -> Router<Arc<AppState>> {
    Router::new().route("/v1/backup", get(create)).route(
        "/v1/backup/restore",
        post(restore).layer(DefaultBodyLimit::max(max_restore_bytes)),
    )
}

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

async fn create(State(st): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    cluster_admin(&caller)?;
    let bytes = backup::create(st.store.as_ref(), now_ms()).await?;
    tracing::info!(by = %caller.0.sub, bytes = bytes.len(), "backup taken");
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Bytes::from(bytes),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreQuery {
    #[serde(default)]
    force: bool,
}

async fn restore(
    State(st): State<Arc<AppState>>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RestoreQuery>,
    body: Bytes,
) -> ApiResult<Json<RestoreReport>> {
    cluster_admin(&caller)?;
    let b = backup::decode(&body)?;
    let report = backup::restore(st.store.as_ref(), b, q.force).await?;
    tracing::warn!(by = %caller.0.sub, objects = report.objects, epoch = report.epoch, "store restored from a backup; leaders elected before now are fenced");
    Ok(Json(report))
}

/// Where scheduled backups go and how many are kept.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: Duration,
    pub keep: usize,
}

const PREFIX: &str = "fluxforge-";
const SUFFIX: &str = ".backup";

/// While this node leads, writes a backup into `dir` every `every` and keeps the newest `keep`.
pub async fn run_scheduled(st: Arc<AppState>, s: Schedule, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(s.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !st.leader.snapshot().is_leader {
            continue;
        }
        match write_one(&st, &s).await {
            Ok(path) => {
                st.metrics.backups.with_label_values(&["ok"]).inc();
                st.metrics.backup_last_success.set((now_ms() / 1000) as i64);
                tracing::info!(path = %path.display(), "scheduled backup written");
            }
            Err(e) => {
                st.metrics.backups.with_label_values(&["error"]).inc();
                tracing::error!(error = %format!("{e:#}"), dir = %s.dir.display(), "scheduled backup failed");
            }
        }
    }
}

async fn write_one(st: &AppState, s: &Schedule) -> anyhow::Result<PathBuf> {
    let bytes = backup::create(st.store.as_ref(), now_ms()).await?;
    let name = format!("{PREFIX}{:013}{SUFFIX}", now_ms());
    let dir = s.dir.clone();
    let keep = s.keep;
    tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        use std::io::Write;
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(&name);
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(&dir)?.sync_all()?;
        prune(&dir, keep)?;
        Ok(path)
    })
    .await?
}

/// Removes all but the newest `keep` scheduled backups in `dir`.
fn prune(dir: &Path, keep: usize) -> std::io::Result<()> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    for n in &names[..excess] {
        std::fs::remove_file(dir.join(n))?;
    }
    Ok(())
}
