//! `fluxctl tenants list|create|quota`: tenants with their usage, creating one (with a first
//! admin token), and reading or replacing a tenant's quota.

use std::time::Duration;

use clap::Subcommand;
use flux_core::model::parse_duration;
use flux_core::quota::Quota;
use flux_core::replies::{QuotaView, TenantCreated, TenantUsage};
use reqwest::Method;
use serde::Serialize;
use serde_json::json;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, SortedKeys, emit, json_text, print_json, table, view};

#[derive(Subcommand, Debug)]
pub enum TenantsCmd {
    /// Tenants with queued and running jobs, agents, states and quotas (admins).
    List,
    /// Create a tenant (admins of tenant default) and print a first admin token for it.
    Create {
        name: String,
        #[command(flatten)]
        limits: Limits,
        /// Lifetime of the admin token.
        #[arg(long, value_parser = parse_duration, default_value = "24h")]
        token_ttl: Duration,
    },
    /// Show or set a tenant's quota.
    #[command(subcommand)]
    Quota(QuotaCmd),
}

#[derive(Subcommand, Debug)]
pub enum QuotaCmd {
    Get {
        tenant: String,
    },
    /// Replace a tenant's quota (admins of tenant default); a limit left out is unlimited.
    Set {
        tenant: String,
        #[command(flatten)]
        limits: Limits,
        /// Submissions allowed in a burst.
        #[arg(long, requires = "submit_rate")]
        submit_burst: Option<u64>,
        /// Collect this tenant's finished jobs this long after they ended (overrides fluxd's
        /// --job-retention).
        #[arg(long, value_parser = parse_duration)]
        job_retention: Option<Duration>,
        /// Keep at most this many of this tenant's finished jobs, newest first (overrides
        /// fluxd's --job-retention-count).
        #[arg(long)]
        job_retention_count: Option<u64>,
        /// Run a fan-out (`job run --all`) over more than this many agents as a rollout with
        /// safe defaults.
        #[arg(long)]
        rollout_above: Option<u64>,
        /// Only if the quota is still at this version (0: never set).
        #[arg(long)]
        if_version: Option<u64>,
    },
}

/// The limits that both `tenants create` and `tenants quota set` take.
#[derive(clap::Args, Debug)]
pub struct Limits {
    /// Jobs waiting for an agent.
    #[arg(long)]
    max_queued: Option<u64>,
    /// Attempts assigned or running at once.
    #[arg(long)]
    max_running: Option<u64>,
    /// Sustained submissions per second (per fluxd node).
    #[arg(long)]
    submit_rate: Option<f64>,
    /// Desired states the tenant may hold.
    #[arg(long)]
    max_states: Option<u64>,
}

impl Limits {
    /// A quota with these limits and nothing else set.
    fn quota(self) -> Quota {
        Quota {
            max_queued: self.max_queued,
            max_running: self.max_running,
            submit_per_sec: self.submit_rate,
            max_states: self.max_states,
            ..Quota::default()
        }
    }
}

/// A quota limit in a table: `-` when unlimited.
fn limit<T: Serialize>(v: &Option<T>) -> String {
    match v {
        None => "-".into(),
        Some(v) => json_text(v),
    }
}

impl Render for [TenantUsage] {
    fn render(&self) -> String {
        let mut t = table(&[
            "TENANT",
            "QUEUED",
            "RUNNING",
            "AGENTS ONLINE",
            "STATES",
            "MAX QUEUED",
            "MAX RUNNING",
            "SUBMIT/S",
            "MAX STATES",
        ]);
        for u in self {
            t.add_row(vec![
                u.tenant.clone(),
                u.queued.to_string(),
                u.running.to_string(),
                format!("{}/{}", u.agents_online, u.agents),
                u.states.to_string(),
                limit(&u.quota.max_queued),
                limit(&u.quota.max_running),
                limit(&u.quota.submit_per_sec),
                limit(&u.quota.max_states),
            ]);
        }
        format!("{t}\n")
    }
}

pub async fn run(ctx: &Ctx, cmd: TenantsCmd) -> CliResult {
    let api = ctx.client()?;
    match cmd {
        TenantsCmd::List => {
            let list: Vec<TenantUsage> = api.get("/v1/tenants").await?;
            emit(ctx.out, &SortedKeys(list.as_slice()))?;
        }
        TenantsCmd::Create {
            name,
            limits,
            token_ttl,
        } => {
            let quota = Some(limits.quota()).filter(|q| *q != Quota::default());
            let reply: TenantCreated = api
                .post(
                    "/v1/tenants",
                    &json!({"name": name, "quota": quota, "admin_token_ttl_secs": token_ttl.as_secs()}),
                )
                .await?;
            emit(
                ctx.out,
                &SortedKeys(&view(&reply, |r| format!("{}\n", r.admin_token))),
            )?;
        }
        TenantsCmd::Quota(QuotaCmd::Get { tenant }) => {
            // JSON in either format: a quota has no table.
            let q: QuotaView = api.get(&format!("/v1/tenants/{tenant}/quota")).await?;
            print_json(&SortedKeys(&q))?;
        }
        TenantsCmd::Quota(QuotaCmd::Set {
            tenant,
            limits,
            submit_burst,
            job_retention,
            job_retention_count,
            rollout_above,
            if_version,
        }) => {
            let body = Quota {
                submit_burst,
                job_retention_secs: job_retention.map(|d| d.as_secs().max(1)),
                job_retention_count,
                rollout_above,
                ..limits.quota()
            };
            let reply: QuotaView = super::job::send_if_match(
                &api,
                Method::PUT,
                &format!("/v1/tenants/{tenant}/quota"),
                Some(&flux_core::client::erased::Body(&body)),
                if_version,
            )
            .await?;
            emit(
                ctx.out,
                &SortedKeys(&view(&reply, |r| {
                    format!("quota of {tenant} set (version {})\n", r.version)
                })),
            )?;
        }
    }
    Ok(())
}
