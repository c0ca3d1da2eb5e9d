//! `fluxctl backup create|verify|restore`: take a snapshot of the whole store into a file,
//! authenticate a file (by the server, or offline with the signing key file), and restore one
//! (authenticated by the server first).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use flux_core::auth::SigningKey;
use flux_core::backup::{self, Backup, BackupKey};
use flux_core::replies::RestoreReport;
use reqwest::Method;
use serde_json::Value;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{SortedKeys, emit, emit_note, view};

/// Header naming another cluster's backup key (see fluxd's backup routes).
const BACKUP_KEY_HEADER: &str = "x-flux-backup-key";

#[derive(Subcommand, Debug)]
pub enum BackupCmd {
    /// Take a consistent snapshot of every tenant and write it to FILE (`-` for stdout).
    /// The file is owner-only (0600), written through a new temporary file beside it.
    Create {
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Authenticate a backup file: format, every line, object count, checksum and the MAC
    /// under the cluster's backup key. The server checks it, unless --signing-key names the
    /// signing key file of the cluster that took it (then nothing is sent anywhere).
    Verify {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Check offline with this signing key file (`signing-key.json` of the cluster that
        /// took the backup).
        #[arg(long, value_name = "PATH")]
        signing_key: Option<PathBuf>,
        /// Have the server check a backup of another cluster with that cluster's signing key
        /// file (only the backup key derived from it is sent).
        #[arg(long, value_name = "PATH", conflicts_with = "signing_key")]
        backup_key: Option<PathBuf>,
    },
    /// Restore a backup (authenticated first). Refuses a store that holds objects unless
    /// --force, which replaces everything. Afterwards the fencing epoch is above every earlier
    /// one.
    Restore {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        #[arg(long)]
        force: bool,
        /// The backup was taken by another cluster: its signing key file, whose derived backup
        /// key (never the signing key itself) is sent so that the server accepts the file.
        #[arg(long, value_name = "PATH")]
        backup_key: Option<PathBuf>,
    },
}

/// Reads a backup file and checks its form (not its MAC: that needs the key).
fn read_backup(file: &Path) -> Result<(Vec<u8>, Backup)> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let b = backup::inspect(&bytes).with_context(|| format!("{} is not valid", file.display()))?;
    if b.header.format_version != backup::FORMAT_VERSION {
        return Err(backup::BackupError::Unauthenticated)
            .with_context(|| format!("{} is not restorable", file.display()));
    }
    Ok((bytes, b))
}

/// The backup key of the cluster whose signing key file is `path` (which must exist: it is
/// never created here).
fn backup_key_from(path: &Path) -> Result<BackupKey> {
    anyhow::ensure!(
        path.is_file(),
        "{} is not a signing key file",
        path.display()
    );
    let (key, _) = SigningKey::load_or_create(path)
        .with_context(|| format!("reading signing key {}", path.display()))?;
    BackupKey::from_signing_key(&key)
        .with_context(|| format!("deriving the backup key from {}", path.display()))
}

/// Extra headers naming another cluster's backup key.
fn key_headers(backup_key: &Option<PathBuf>) -> Result<Vec<(&'static str, String)>> {
    Ok(match backup_key {
        Some(p) => vec![(BACKUP_KEY_HEADER, backup_key_from(p)?.to_hex())],
        None => vec![],
    })
}

/// POSTs a backup file with `headers` and decodes the JSON answer.
async fn call_keyed<T: serde::de::DeserializeOwned>(
    api: &flux_core::client::ApiClient,
    path: &str,
    headers: &[(&'static str, String)],
    bytes: Vec<u8>,
) -> Result<T> {
    let resp = api
        .send_with_headers(
            Method::POST,
            path,
            Some(&flux_core::client::erased::Raw(bytes)),
            Duration::from_secs(3600),
            headers,
        )
        .await?;
    let body = resp.bytes().await.context("reading the answer")?;
    serde_json::from_slice(&body).context("decoding the answer")
}

fn ok_line(b: &Backup, by: &str) -> String {
    format!(
        "ok: {} objects in {} tenants, taken from {} at epoch {}, signed by key {} ({by}), sha256 {}\n",
        b.entries.len(),
        b.tenants().len(),
        b.header.source_backend,
        b.header.epoch,
        b.header.key_id.as_deref().unwrap_or("-"),
        b.sha256
    )
}

pub async fn run(ctx: &Ctx, cmd: BackupCmd) -> CliResult {
    match cmd {
        BackupCmd::Create { file } => create(ctx, &file).await?,
        BackupCmd::Verify {
            file,
            signing_key: Some(key_file),
            ..
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let b = backup::decode(&bytes, &backup_key_from(&key_file)?)
                .with_context(|| format!("{} is not valid", file.display()))?;
            emit(
                ctx.out,
                &view(&b.summary(), |_| ok_line(&b, "checked offline")),
            )?;
        }
        BackupCmd::Verify {
            file, backup_key, ..
        } => {
            let (bytes, b) = read_backup(&file)?;
            let api = ctx.client()?;
            let _: Value =
                call_keyed(&api, "/v1/backup/verify", &key_headers(&backup_key)?, bytes).await?;
            emit(
                ctx.out,
                &view(&b.summary(), |_| ok_line(&b, "checked by the server")),
            )?;
        }
        BackupCmd::Restore {
            file,
            force,
            backup_key,
        } => {
            let (bytes, _) = read_backup(&file)?;
            let api = ctx.client()?;
            let report: RestoreReport = call_keyed(
                &api,
                &format!("/v1/backup/restore?force={force}"),
                &key_headers(&backup_key)?,
                bytes,
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
    // Never write a file that would not restore (the server checks its MAC on restore).
    let b = backup::inspect(&bytes).context("the server sent an invalid backup")?;
    if file == Path::new("-") {
        std::io::stdout().lock().write_all(&bytes)?;
        return Ok(());
    }
    // Every tenant's data is in it: owner-only, like the keys it sits beside.
    flux_core::files::replace_private(file, &bytes)
        .with_context(|| format!("writing {}", file.display()))?;
    // The summary goes to stderr in a table: stdout is kept for data.
    emit_note(ctx.out, &b.summary(), |_| {
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
