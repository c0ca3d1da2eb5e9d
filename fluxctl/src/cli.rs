//! The command line as clap sees it: the global flags ([`Cli`]) and the command tree ([`Cmd`]).
//! Each command's own flags live with its code in `commands/<command>.rs`; this file only
//! names the commands, so the help text and the shipped completions are built from one tree.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{
    agents, apply, audit, backup, bench, chaos, completions, config, delete, diff, events, get,
    job, rollout, schedule, state, tenants, token, webhooks,
};
use crate::output::Output;

/// FluxForge command-line interface.
#[derive(Parser, Debug)]
// The global flags under their own heading, after each command's own flags.
#[command(
    name = "fluxctl",
    version,
    about,
    propagate_version = true,
    next_help_heading = "Global options"
)]
pub struct Cli {
    /// Control-plane URL (overrides the context).
    #[arg(long, global = true, env = "FLUX_SERVER")]
    pub server: Option<String>,
    /// Bearer token (overrides the context; prefer FLUX_TOKEN or --token-file).
    #[arg(long, global = true, env = "FLUX_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true, env = "FLUX_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust.
    #[arg(long, global = true, env = "FLUX_CA")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (like curl -k).
    #[arg(long, global = true, env = "FLUX_INSECURE")]
    pub insecure: bool,
    /// Context from the config file to use.
    #[arg(long, global = true, env = "FLUX_CONTEXT")]
    pub context: Option<String>,
    /// Config file (default ~/.config/fluxforge/config.toml).
    #[arg(long, global = true, env = "FLUX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(
        short = 'o',
        long,
        global = true,
        value_enum,
        default_value = "table",
        env = "FLUX_OUTPUT"
    )]
    pub output: Output,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run and inspect jobs.
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Follow and steer rollouts (runs across a fleet at a controlled rate).
    #[command(subcommand)]
    Rollout(rollout::RolloutCmd),
    /// Cron jobs that fire once per slot: create, list, get, pause, resume, trigger, delete.
    #[command(subcommand)]
    Schedule(schedule::ScheduleCmd),
    /// List and inspect agents.
    #[command(subcommand)]
    Agents(agents::AgentsCmd),
    /// Create and revoke tokens (admin).
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Declare desired state from a state.toml: create and update its states (and with
    /// --prune delete the tenant's states it does not list).
    Apply(apply::Args),
    /// Show what `apply` would change. Exit 0: nothing; 1: changes; 2: error.
    Diff(diff::Args),
    /// Steer desired states: resume the remediation a state's rollout halted.
    #[command(subcommand)]
    State(state::StateCmd),
    /// Show objects (desired states with their targets' status).
    #[command(subcommand)]
    Get(get::GetCmd),
    /// Delete objects.
    #[command(subcommand)]
    Delete(delete::DeleteCmd),
    /// Tenants with their usage, and their quotas.
    #[command(subcommand)]
    Tenants(tenants::TenantsCmd),
    /// Print the tenant's events (jobs, agents, states, tokens); -f follows them live.
    Events(events::Args),
    /// Send events to other systems: signed HTTPS deliveries, at least once (admins).
    #[command(subcommand)]
    Webhooks(webhooks::WebhooksCmd),
    /// Read and verify the audit log (admins).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Back up, verify and restore the whole store (admins of tenant default).
    #[command(subcommand)]
    Backup(backup::BackupCmd),
    /// Cluster status: this node, leader, epoch, agents by state.
    Status,
    /// Show the identity of the current token.
    Whoami,
    /// Manage contexts in the config file.
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Benchmarks against a running control plane.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Fault-injection runs on a local cluster, judged by an invariant checker.
    #[command(subcommand)]
    Chaos(chaos::ChaosCmd),
    /// Print shell completions.
    Completions(completions::Args),
}

/// Value parser of `KEY=VALUE` flags (`--env`, `--selector`, `--label`).
pub fn parse_kv(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} must be KEY=VALUE"))
}
