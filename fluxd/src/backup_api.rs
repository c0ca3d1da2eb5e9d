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

/// Backup routes move the whole store: they get their own body limit and a time limit of an
/// hour instead of the API's usual one.
pub fn routes(max_restore_bytes: usize) -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/backup", get(create))
        .route(
            "/v1/backup/restore",
            post(restore).layer(DefaultBodyLimit::max(max_restore_bytes)),
        )
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            BACKUP_TIMEOUT,
        ))
}

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

async fn create(State(st): State<Arc<AppState>>, caller: Caller) -> ApiResult<Response> {
    cluster_admin(&caller)?;
    let snap = st.store.snapshot().await.map_err(BackupError::from)?;
    let backend = st.store.backend();
    let bytes = tokio::task::spawn_blocking(move || backup::encode(&snap, backend, now_ms()))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
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
    let b = tokio::task::spawn_blocking(move || backup::decode(&body))
        .await
        .map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })??;
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
    let snap = st.store.snapshot().await?;
    let backend = st.store.backend();
    let name = format!("{PREFIX}{:013}{SUFFIX}", now_ms());
    let dir = s.dir.clone();
    let keep = s.keep;
    tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        let bytes = backup::encode(&snap, backend, now_ms());
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(&name);
        // A backup holds every tenant's data (secrets included): owner-only, like the keys.
        flux_core::files::replace_private(&path, &dir.join(format!(".{name}.tmp")), &bytes)?;
        prune(&dir, keep, &name)?;
        Ok(path)
    })
    .await?
}

/// Whether `name` is one of ours: `fluxforge-<13 digits>.backup`.
fn scheduled_name(name: &str) -> bool {
    name.strip_prefix(PREFIX)
        .and_then(|r| r.strip_suffix(SUFFIX))
        .is_some_and(|d| d.len() == 13 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes all but the newest `keep` scheduled backups in `dir` (never `just_written`, never a
/// file it did not name itself) and temporary files of writes that did not finish.
fn prune(dir: &Path, keep: usize, just_written: &str) -> std::io::Result<()> {
    let mut names = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let Ok(name) = e?.file_name().into_string() else {
            continue;
        };
        if scheduled_name(&name) {
            names.push(name);
        } else if name
            .strip_prefix('.')
            .and_then(|n| n.strip_suffix(".tmp"))
            .is_some_and(scheduled_name)
            && name != format!(".{just_written}.tmp")
        {
            std::fs::remove_file(dir.join(&name))?;
        }
    }
    names.sort();
    let excess = names.len().saturating_sub(keep.max(1));
    for n in names[..excess].iter().filter(|n| *n != just_written) {
        std::fs::remove_file(dir.join(n))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_keeps_the_newest_and_touches_only_its_own_files() {
        let dir = tempfile::tempdir().unwrap();
        let touch = |n: &str| std::fs::write(dir.path().join(n), b"x").unwrap();
        for n in [
            "fluxforge-0000000000001.backup",
            "fluxforge-0000000000002.backup",
            "fluxforge-0000000000003.backup",
            "fluxforge-pre-upgrade.backup",
            ".fluxforge-0000000000000.backup.tmp",
            "notes.txt",
        ] {
            touch(n);
        }
        prune(dir.path(), 2, "fluxforge-0000000000003.backup").unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            vec![
                "fluxforge-0000000000002.backup",
                "fluxforge-0000000000003.backup",
                "fluxforge-pre-upgrade.backup",
                "notes.txt"
            ]
        );
    }
}
