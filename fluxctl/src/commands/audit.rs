//! `fluxctl audit log|verify|export`: print audit records (a page, or all of them), walk the
//! hash chain (exit 1 when a record was altered, removed or cut off), and export the oldest
//! records to a signed file that `audit verify --file` checks (exit 1 when it was edited).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use flux_core::audit::{ExportCheck, ExportFile, Record, Verification};
use flux_core::client::erased::Raw;
use flux_core::model::{now_ms, parse_duration};
use reqwest::Method;

use crate::context::Ctx;
use crate::error::{CliResult, ok_or_1};
use crate::output::{Render, age, emit, emit_note, short, table};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print audit records, oldest first (a page; --all follows every page).
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Records per page (1..=10000).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        limit: u64,
        /// Every record after --after, page by page.
        #[arg(long)]
        all: bool,
        /// Another tenant (admins of tenant default).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Walk the hash chain; exit 1 if a record was altered, removed or cut off. With --file,
    /// check an export file instead; exit 1 if it was edited.
    Verify {
        #[arg(long, conflicts_with_all = ["all", "file"])]
        tenant: Option<String>,
        /// Every tenant (admins of tenant default).
        #[arg(long, conflicts_with = "file")]
        all: bool,
        /// An export file written by `fluxctl audit export`.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// Write the records made before DATE (after the last export) and a signed checkpoint to
    /// FILE; once exported, `fluxd --audit-retention` may prune them.
    Export {
        /// A date (2026-11-01, UTC), a time (RFC 3339) or an age (30d: made more than 30 days
        /// ago).
        #[arg(long, value_parser = parse_before)]
        before: u64,
        /// Start after this record instead of after the last export.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long)]
        tenant: Option<String>,
        /// Where to write the export (owner-only; `-` for stdout).
        file: PathBuf,
    },
}

/// `--before`: a date (UTC midnight), an RFC 3339 time, or an age before now; in ms.
fn parse_before(s: &str) -> Result<u64, String> {
    use time::format_description::well_known::Rfc3339;
    let ms = |t: time::OffsetDateTime| {
        u64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("{s:?} is before 1970"))
    };
    if let Ok(t) = time::OffsetDateTime::parse(s, &Rfc3339) {
        return ms(t);
    }
    // A date alone is its midnight, UTC.
    if let Ok(t) = time::OffsetDateTime::parse(&format!("{s}T00:00:00Z"), &Rfc3339) {
        return ms(t);
    }
    match parse_duration(s) {
        Ok(age) => Ok(now_ms().saturating_sub(age.as_millis() as u64)),
        Err(_) => Err(format!(
            "{s:?} is not a date (2026-11-01), an RFC 3339 time or an age (30d)"
        )),
    }
}

impl Render for [Record] {
    fn render(&self) -> String {
        let mut t = table(&[
            "SEQ", "AGE", "ACTOR", "ROLE", "TOKEN", "ISSUER", "ACTION", "OBJECT", "STATUS", "HASH",
        ]);
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        for r in self {
            t.add_row(vec![
                r.seq.to_string(),
                age(r.event.at),
                r.event.actor.clone(),
                or_dash(&r.event.role),
                or_dash(&r.event.jti),
                or_dash(&r.event.issuer),
                r.event.action.clone(),
                short(&r.event.object, 48),
                r.event.status.to_string(),
                r.hash.chars().take(12).collect(),
            ]);
        }
        format!("{t}\n")
    }
}

impl Render for [Verification] {
    fn render(&self) -> String {
        let mut text = String::new();
        for v in self {
            text.push_str(&match &v.problem {
                None => match &v.note {
                    None => format!("{}: ok, {} records\n", v.tenant, v.records),
                    Some(n) => format!("{}: ok, {} records ({n})\n", v.tenant, v.records),
                },
                Some(p) => format!(
                    "{}: BROKEN after {} good records: {p}\n",
                    v.tenant, v.records
                ),
            });
        }
        text
    }
}

impl Render for ExportCheck {
    fn render(&self) -> String {
        let range = match (self.first_seq, self.last_seq) {
            (Some(f), Some(l)) if l >= f => format!("records {f}..={l}"),
            _ => "no records".to_string(),
        };
        let tenant = self.tenant.as_deref().unwrap_or("-");
        match &self.problem {
            None => format!("{tenant}: ok, {range} ({} records)\n", self.records),
            Some(p) => format!("{tenant}: BROKEN export ({range}): {p}\n"),
        }
    }
}

fn tenant_q(t: &Option<String>) -> String {
    t.as_ref()
        .map(|t| format!("&tenant={t}"))
        .unwrap_or_default()
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        AuditCmd::Log {
            mut after,
            limit,
            all,
            tenant,
        } => {
            let mut recs: Vec<Record> = Vec::new();
            loop {
                let page: Vec<Record> = api
                    .get(&format!(
                        "/v1/audit?after={after}&limit={limit}{}",
                        tenant_q(&tenant)
                    ))
                    .await?;
                let full = page.len() as u64 >= limit;
                if let Some(last) = page.last() {
                    after = last.seq;
                }
                recs.extend(page);
                if !all || !full {
                    break;
                }
            }
            emit(ctx.out, recs.as_slice())?;
            Ok(())
        }
        AuditCmd::Verify {
            file: Some(file), ..
        } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let resp = api
                .send(
                    Method::POST,
                    "/v1/audit/verify-file",
                    Some(&Raw(bytes)),
                    Duration::from_secs(3600),
                )
                .await?;
            let body = resp.bytes().await.context("reading the answer")?;
            let check: ExportCheck =
                serde_json::from_slice(&body).context("decoding the answer")?;
            emit(ctx.out, &check)?;
            ok_or_1(check.ok)
        }
        AuditCmd::Verify { tenant, all, .. } => {
            let path = if all {
                "/v1/audit/verify?all=true".to_string()
            } else {
                format!(
                    "/v1/audit/verify?{}",
                    tenant_q(&tenant).trim_start_matches('&')
                )
            };
            let results: Vec<Verification> = api.get(&path).await?;
            emit(ctx.out, results.as_slice())?;
            ok_or_1(results.iter().all(|v| v.ok))
        }
        AuditCmd::Export {
            before,
            after,
            tenant,
            file,
        } => {
            let after = after.map(|a| format!("&after={a}")).unwrap_or_default();
            let path = format!(
                "/v1/audit/export?before={before}{after}{}",
                tenant_q(&tenant)
            );
            let resp = api
                .send(Method::POST, &path, None, Duration::from_secs(3600))
                .await?;
            let bytes = resp.bytes().await.context("reading the export")?;
            let export: ExportFile =
                serde_json::from_slice(&bytes).context("the server sent an invalid export")?;
            write_export(ctx, &file, &bytes, &export)
        }
    }
}

fn write_export(ctx: &Ctx, file: &Path, bytes: &[u8], export: &ExportFile) -> CliResult {
    let h = &export.header;
    if export.records.is_empty() {
        emit_note(ctx.out, &h, |h| {
            format!(
                "nothing to export: no records of tenant {} after record {} were made before then",
                h.tenant, h.last_seq
            )
        })?;
        return Ok(());
    }
    if file == Path::new("-") {
        use std::io::Write;
        std::io::stdout().lock().write_all(bytes)?;
    } else {
        flux_core::files::replace_private(file, bytes)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    emit_note(ctx.out, &h, |h| {
        let more = if export.more {
            "; more records made before then remain: run the export again"
        } else {
            ""
        };
        format!(
            "exported records {}..={} of tenant {} to {}{more}",
            h.first_seq,
            h.last_seq,
            h.tenant,
            file.display()
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_before;
    use flux_core::model::now_ms;

    #[test]
    fn before_takes_a_date_a_time_or_an_age() {
        assert_eq!(parse_before("2026-11-01"), Ok(1_793_491_200_000));
        assert_eq!(
            parse_before("2026-11-01T01:00:00+01:00"),
            Ok(1_793_491_200_000)
        );
        let age = parse_before("1d").unwrap();
        let expected = now_ms() - 86_400_000;
        assert!(age.abs_diff(expected) < 60_000, "{age} vs {expected}");
        for bad in ["yesterday", "2026-13-01", "1969-12-31", ""] {
            assert!(parse_before(bad).is_err(), "{bad}");
        }
    }
}
