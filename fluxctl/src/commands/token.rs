//! `fluxctl token create|revoke`: issue a token (printed alone, for a file or a variable) and
//! revoke one by its value or id.

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
        #[arg(long, value_parser = ["admin", "operator", "viewer", "agent"])]
        role: String,
        #[arg(long, default_value = "24h", value_parser = parse_duration)]
        ttl: Duration,
        /// Node id bound into an agent token.
        #[arg(long)]
        node_id: Option<String>,
        #[arg(long)]
        subject: Option<String>,
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
        } => {
            let reply: TokenReply = api
                .post(
                    "/v1/tokens",
                    &json!({"tenant": tenant, "role": role, "ttl_secs": ttl.as_secs(), "node_id": node_id, "subject": subject}),
                )
                .await?;
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
