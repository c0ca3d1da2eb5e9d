//! `fluxctl token create|revoke`: issue a token (printed alone, for a file or a variable) and
//! revoke one by its value or id.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::anyhow;
use clap::Subcommand;
use flux_core::model::parse_duration;
use flux_core::replies::{RevokeReply, TokenReply};
use serde_json::json;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{SortedKeys, emit, view};

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Issue a token.
    Create {
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, value_parser = ["admin", "operator", "viewer", "agent", "enroll"])]
        role: String,
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Node id bound into an agent token.
        #[arg(long)]
        node_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
        /// Enrollment tokens (--role enroll): how many agents may enroll with it.
        #[arg(long)]
        uses: Option<u32>,
        /// Enrollment tokens: an admin label KEY=VALUE given to every agent enrolled with it
        /// (repeatable).
        #[arg(long = "label", value_parser = crate::cli::parse_kv)]
        labels: Vec<(String, String)>,
    },
    /// Revoke a token, given the token or its id (jti).
    Revoke {
        #[arg(long, conflicts_with = "token_value")]
        jti: Option<String>,
        #[arg(value_name = "TOKEN")]
        token_value: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        TokenCmd::Create {
            tenant,
            role,
            ttl,
            node_id,
            subject,
            uses,
            labels,
        } => {
            let mut body = json!({"tenant": tenant, "role": role, "ttl_secs": ttl.as_secs(), "node_id": node_id, "subject": subject});
            if role == "enroll" {
                body["uses"] = json!(uses.unwrap_or(1));
                body["labels"] = json!(labels.into_iter().collect::<BTreeMap<_, _>>());
            } else if uses.is_some() || !labels.is_empty() {
                return Err(anyhow!(
                    "--uses and --label are for enrollment tokens (--role enroll)"
                )
                .into());
            }
            let reply: TokenReply = api.post("/v1/tokens", &body).await?;
            emit(
                ctx.out,
                &SortedKeys(&view(&reply, |r| format!("{}\n", r.token))),
            )?;
        }
        TokenCmd::Revoke { jti, token_value } => {
            let body = match (jti, token_value) {
                (Some(j), None) => json!({"jti": j}),
                (None, Some(t)) => json!({"token": t}),
                _ => return Err(anyhow!("give the token or --jti").into()),
            };
            let reply: RevokeReply = api.post("/v1/tokens/revoke", &body).await?;
            emit(
                ctx.out,
                &SortedKeys(&view(&reply, |r| format!("revoked {}\n", r.revoked))),
            )?;
        }
    }
    Ok(())
}
