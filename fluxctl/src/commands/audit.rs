//! `fluxctl audit log|verify`: print audit records, and walk the hash chain (exit 1 when a
//! record was altered, removed or cut off).

use clap::Subcommand;
use flux_core::audit::{Record, Verification};

use crate::context::Ctx;
use crate::error::{CliResult, ok_or_1};
use crate::output::{Render, age, emit, short, table};

#[derive(Subcommand, Debug)]
pub enum AuditCmd {
    /// Print audit records, oldest first.
    Log {
        /// Only records after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Another tenant (admins of tenant default).
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Walk the hash chain; exit 1 if a record was altered, removed or cut off.
    Verify {
        #[arg(long, conflicts_with = "all")]
        tenant: Option<String>,
        /// Every tenant (admins of tenant default).
        #[arg(long)]
        all: bool,
    },
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

fn tenant_q(t: &Option<String>) -> String {
    t.as_ref()
        .map(|t| format!("&tenant={t}"))
        .unwrap_or_default()
}

pub async fn run(ctx: &Ctx, cmd: AuditCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        AuditCmd::Log {
            after,
            limit,
            tenant,
        } => {
            let recs: Vec<Record> = api
                .get(&format!(
                    "/v1/audit?after={after}&limit={limit}{}",
                    tenant_q(&tenant)
                ))
                .await?;
            emit(ctx.out, recs.as_slice())?;
            Ok(())
        }
        AuditCmd::Verify { tenant, all } => {
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
    }
}
