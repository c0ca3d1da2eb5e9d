//! `flux-agent --simulate N`: N lightweight agents in one process, for scale tests of the
//! control plane. Each has its own node id and agent token (minted through `POST /v1/tokens`
//! with the given admin token), registers, heartbeats and long-polls like a real agent (the same
//! [`Agent`] code), and carries out a task by waiting a while and reporting one line of output
//! and exit code 0; nothing is executed.
//!
//! All agents share a few HTTP/2 connections: fluxd serves at most 200 concurrent streams per
//! connection, so every `--simulate-per-connection` agents get a connection pool of their own.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flux_core::auth::Role;
use flux_core::client::{ApiClient, ClientError, TlsOptions};
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, Exec, Profile, is_session_conflict, with_retry};
use crate::retry::{Backoff, stopped_during};
use crate::{Args, stop_on_signals};

/// Lifetime of the agent tokens minted for simulated agents.
const TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;

#[derive(clap::Args, Debug, Clone)]
pub struct SimulateArgs {
    /// Run N simulated agents in this process instead of one real agent (scale tests). The
    /// token must be allowed to create agent tokens (an admin of its tenant): one is minted per
    /// simulated agent. Jobs are not executed: each waits --simulate-run-ms, prints one line
    /// and exits 0.
    #[arg(long, value_name = "N", conflicts_with = "state_dir",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub simulate: Option<u32>,
    /// Node ids of simulated agents are PREFIX-<i>, i zero-padded from 1.
    #[arg(
        long,
        value_name = "PREFIX",
        default_value = "sim",
        requires = "simulate"
    )]
    pub simulate_prefix: String,
    /// How long a simulated job runs, in milliseconds (0: it ends as soon as it starts, so
    /// that a benchmark measures the control plane alone).
    #[arg(long, value_name = "MS", default_value_t = 10, requires = "simulate")]
    pub simulate_run_ms: u64,
    /// Simulated agents sharing one connection (HTTP/2 multiplexes their requests; fluxd allows
    /// 200 concurrent streams per connection, and each agent holds a long poll and more).
    #[arg(long, value_name = "N", default_value_t = 64, requires = "simulate",
          value_parser = clap::value_parser!(u32).range(1..=150))]
    pub simulate_per_connection: u32,
    /// Simulated agents starting (minting their token and registering) at once.
    #[arg(long, value_name = "N", default_value_t = 32, requires = "simulate",
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub simulate_start_concurrency: u32,
}

/// Node id of simulated agent `i` (from 1) of `n`.
fn node_id(prefix: &str, i: u32, n: u32) -> String {
    let width = n.to_string().len();
    format!("{prefix}-{i:0width$}")
}

#[derive(Deserialize)]
struct Minted {
    token: String,
}

/// Mints the agent token of `node_id` with the admin client.
async fn mint(
    admin: &ApiClient,
    tenant: &str,
    node_id: &str,
    stop: &CancellationToken,
) -> Result<String, ClientError> {
    let body = serde_json::json!({
        "tenant": tenant,
        "role": "agent",
        "node_id": node_id,
        "ttl_secs": TOKEN_TTL_SECS,
    });
    let minted: Minted =
        with_retry(stop, "agent token", || admin.post("/v1/tokens", &body)).await?;
    Ok(minted.token)
}

/// Registers `agent`, waiting while the node is held by an earlier live session. With
/// thousands of agents starting on a busy node, a registration can time out on the client
/// after the node took it; its retry then finds the node held by a session whose secret never
/// arrived, and may register only once that session is declared dead (as a real agent does
/// after a restart without its state directory).
async fn register(agent: &Agent, stop: &CancellationToken) -> Result<(), ClientError> {
    let mut refused = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
    loop {
        match agent.register(stop).await {
            Err(e) if is_session_conflict(&e) && !stop.is_cancelled() => {
                if refused.failures() == 0 {
                    tracing::warn!(node = %agent.node_id, error = %e,
                        "registration held by an earlier session; waiting until it is dead");
                }
                if stopped_during(stop, refused.next_delay()).await {
                    return Err(e);
                }
            }
            r => return r,
        }
    }
}

/// One simulated agent, from its token to the end of its poll loop.
async fn agent(
    admin: Arc<ApiClient>,
    tenant: Arc<str>,
    node_id: String,
    token: Option<String>,
    profile: Arc<Profile>,
    stop: CancellationToken,
    starting: tokio::sync::OwnedSemaphorePermit,
) -> Result<()> {
    let token = match token {
        Some(t) => t,
        None => mint(&admin, &tenant, &node_id, &stop)
            .await
            .with_context(|| format!("creating the agent token of {node_id}"))?,
    };
    let agent = Arc::new(Agent::new(admin.with_token(Some(token)), node_id, profile));
    register(&agent, &stop)
        .await
        .with_context(|| format!("registering {}", agent.node_id))?;
    drop(starting);
    let result = tokio::select! {
        r = agent.clone().poll_loop(stop.clone()) => r,
        () = agent.clone().heartbeat_loop(stop.clone()) => Ok(()),
    };
    agent
        .wait_idle(tokio::time::Instant::now() + Duration::from_secs(5))
        .await;
    result.with_context(|| format!("simulated agent {}", agent.node_id))
}

pub async fn run(args: &Args, n: u32, admin_token: String, tls: &TlsOptions) -> Result<ExitCode> {
    let sim = &args.simulate;
    let claims =
        flux_core::auth::peek_claims(&admin_token).context("the token is not a FluxForge token")?;
    if claims.role != Role::Admin {
        bail!(
            "--simulate needs a token that may create agent tokens (an admin of the tenant); \
             this token has role {}",
            claims.role
        );
    }
    let tenant: Arc<str> = claims.tenant.into();
    let profile = Arc::new(Profile::new(
        args,
        Exec::Simulated {
            run: Duration::from_millis(sim.simulate_run_ms),
        },
    ));
    let stop = CancellationToken::new();
    stop_on_signals(stop.clone());
    let concurrency = sim.simulate_start_concurrency;
    let starting = Arc::new(Semaphore::new(concurrency as usize));
    let mut agents = JoinSet::new();
    let mut admin = None;
    let t0 = std::time::Instant::now();
    tracing::info!(agents = n, tenant = %tenant, "starting simulated agents");
    let mut failure = None;
    for i in 1..=n {
        while let Some(r) = agents.try_join_next() {
            if let Err(e) = r.context("simulated agent task").and_then(|r| r) {
                failure.get_or_insert(e);
            }
        }
        if failure.is_some() {
            break;
        }
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = starting.clone().acquire_owned() => p.expect("semaphore open"),
        };
        let id = node_id(&sim.simulate_prefix, i, n);
        let mut token = None;
        if (i - 1) % sim.simulate_per_connection == 0 {
            // A new connection pool; its first call is made alone, so that it opens a single
            // connection (HTTP/2, negotiated through ALPN) which the others then share.
            let client = Arc::new(ApiClient::new(
                args.servers.clone(),
                Some(admin_token.clone()),
                tls,
            )?);
            token = match mint(&client, &tenant, &id, &stop).await {
                Ok(t) => Some(t),
                Err(_) if stop.is_cancelled() => break,
                Err(e) => {
                    failure = Some(match e {
                        e @ ClientError::Api { .. } => {
                            anyhow::anyhow!(
                                "cannot create agent tokens with the given token (for {id}): {e}"
                            )
                        }
                        e => anyhow::anyhow!("cannot create agent tokens: {e}"),
                    });
                    break;
                }
            };
            admin = Some(client);
        }
        let admin = admin.clone().expect("a client for the first agent");
        agents.spawn(agent(
            admin,
            tenant.clone(),
            id,
            token,
            profile.clone(),
            stop.clone(),
            permit,
        ));
    }
    if let Some(e) = &failure {
        // Stop the agents already started the usual way, so they report what runs.
        tracing::error!("{e:#}; stopping every simulated agent");
        stop.cancel();
    }
    // Every agent has registered (or failed) once all start permits are free again.
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = starting.acquire_many(concurrency) => {
            tracing::info!(agents = n, secs = t0.elapsed().as_secs_f64(), "simulated agents started");
        }
    }
    while let Some(r) = agents.join_next().await {
        let r = r.context("simulated agent task").and_then(|r| r);
        if let Err(e) = r
            && !stop.is_cancelled()
        {
            // One agent's failure (its token refused, say) ends the simulation.
            tracing::error!("{e:#}; stopping every simulated agent");
            failure = Some(e);
            stop.cancel();
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(ExitCode::SUCCESS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_zero_padded_to_the_fleet_size() {
        assert_eq!(node_id("sim", 1, 50), "sim-01");
        assert_eq!(node_id("sim", 50, 50), "sim-50");
        assert_eq!(node_id("rack", 7, 10_000), "rack-00007");
        assert_eq!(node_id("x", 1, 1), "x-1");
    }
}
