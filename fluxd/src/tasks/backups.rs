//! Scheduled backups (`--backup-dir`): while this node leads, a backup of the whole store is
//! written every `--backup-every` and only the newest `--backup-keep` of them are kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flux_core::backup;
use flux_core::model::now_ms;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

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
    let mut tick = super::ticker(s.every);
    tick.tick().await;
    while super::ticked(&mut tick, &cancel).await {
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
    let key = st.audit.backup_key();
    tokio::task::spawn_blocking(move || -> anyhow::Result<PathBuf> {
        let bytes = backup::encode(&snap, backend, now_ms(), &key);
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(&name);
        // A backup holds every tenant's data (secrets included): owner-only, like the keys.
        flux_core::files::replace_private(&path, &bytes)?;
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

/// Whether `name` is the temporary file of one of our writes that did not finish:
/// `.fluxforge-<13 digits>.backup.<random>.tmp`. Only one write runs at a time (this loop), so
/// any such file is left over.
fn temporary(name: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.split_once(SUFFIX))
        .is_some_and(|(stem, _)| {
            let target = format!("{stem}{SUFFIX}");
            scheduled_name(&target) && flux_core::files::is_tmp_for(name, &target)
        })
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
        } else if temporary(&name) {
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
            ".fluxforge-0000000000000.backup.00112233445566ff.tmp",
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
                ".fluxforge-0000000000000.backup.tmp",
                "fluxforge-0000000000002.backup",
                "fluxforge-0000000000003.backup",
                "fluxforge-pre-upgrade.backup",
                "notes.txt"
            ]
        );
    }
}
