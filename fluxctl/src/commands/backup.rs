//! `fluxctl backup create|verify|restore`: take a snapshot of the whole store into a file,
//! check a file offline, and restore one (verified first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use flux_core::backup::{self, Backup};
use flux_core::replies::RestoreReport;
use reqwest::Method;
use serde_json::{Value, json};

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{SortedKeys, emit, emit_note, view};

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout).
    Create {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Check a backup file offline: format, every line, object count and checksum.
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Restore a backup (verified first). Refuses a store that holds objects unless --force,
    /// which replaces everything. Afterwards the fencing epoch is above every earlier one.
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        force: bool,
    },
}

fn backup_summary(b: &Backup) -> Value {
    json!({
        "format_version": b.header.format_version,
        "created_at": b.header.created_at,
        "source_backend": b.header.source_backend,
        "epoch": b.header.epoch,
        "objects": b.entries.len(),
        "tenants": b.tenants(),
        "sha256": b.sha256,
    })
}

/// Reads and checks a backup file.
fn read_backup(file: &Path) -> Result<(Vec<u8>, Backup)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let b = backup::decode(&bytes).with_context(|| format!("{} is not valid", file.display()))?;
    Ok((bytes, b))
}

pub async fn run(ctx: &Ctx, cmd: BackupCmd) -> CliResult {
    match cmd {
        BackupCmd::Create { file } => create(ctx, &file).await?,
        BackupCmd::Verify { file } => {
            let (_, b) = read_backup(&file)?;
            emit(
                ctx.out,
                &view(&backup_summary(&b), |_| {
                    format!(
                        "ok: {} objects in {} tenants, taken from {} at epoch {}, sha256 {}\n",
                        b.entries.len(),
                        b.tenants().len(),
                        b.header.source_backend,
                        b.header.epoch,
                        b.sha256
                    )
                }),
            )?;
        }
        BackupCmd::Restore { file, force } => {
            let (bytes, _) = read_backup(&file)?;
            let api = ctx.client()?;
            let report: RestoreReport = api
                .call(
                    Method::POST,
                    &format!("/v1/backup/restore?force={force}"),
                    Some(&flux_core::client::erased::Raw(bytes)),
                    Duration::from_secs(3600),
                )
                .await?;
            emit(
                ctx.out,
                &SortedKeys(&view(&report, |r| {
                    format!(
                        "restored {} objects in {} tenants; fencing epoch now {} (backup taken at {})\n",
                        r.objects, r.tenants, r.epoch, r.backup_epoch
                    )
                })),
            )?;
        }
    }
    Ok(())
}

async fn create(ctx: &Ctx, file: &Path) -> Result<()> {
    let api = ctx.client()?;
    let bytes = api
        .send(Method::GET, "/v1/backup", None, Duration::from_secs(3600))
        .await?
        .bytes()
        .await
        .context("reading the backup")?;
    // Never write a file that would not restore.
    let b = backup::decode(&bytes).context("the server sent an invalid backup")?;
    if file == Path::new("-") {
        std::io::stdout().lock().write_all(&bytes)?;
        return Ok(());
    }
    // Every tenant's data is in it: owner-only, like the keys it sits beside.
    flux_core::files::replace_private(file, &file.with_extension("partial"), &bytes)
        .with_context(|| format!("writing {}", file.display()))?;
    // The summary goes to stderr in a table: stdout is kept for data.
    emit_note(ctx.out, &backup_summary(&b), |_| {
        format!(
            "backup of {} objects in {} tenants (epoch {}) written to {}; sha256 {}",
            b.entries.len(),
            b.tenants().len(),
            b.header.epoch,
            file.display(),
            b.sha256
        )
    })
}
