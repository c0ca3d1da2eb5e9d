//! One module per command (or command group), each with its clap arguments and a `run` that
//! calls the library and hands the result to [`crate::output`]; this file only dispatches.

pub mod agents;
pub mod apply;
pub mod audit;
pub mod backup;
pub mod bench;
pub mod chaos;
pub mod completions;
pub mod config;
pub mod delete;
pub mod diff;
pub mod events;
pub mod get;
pub mod job;
pub mod rollout;
pub mod schedule;
pub mod state;
pub mod status;
pub mod tenants;
pub mod token;
pub mod webhooks;
pub mod whoami;

use crate::cli::{Cli, Cmd};
use crate::context::Ctx;
use crate::error::CliResult;

pub async fn run(cli: Cli) -> CliResult {
    let ctx = Ctx::new(&cli);
    match cli.cmd {
        Cmd::Job(cmd) => job::run(&ctx, cmd).await,
        Cmd::Rollout(cmd) => rollout::run(&ctx, cmd).await,
        Cmd::Agents(cmd) => agents::run(&ctx, cmd).await,
        Cmd::Schedule(cmd) => schedule::run(&ctx, cmd).await,
        Cmd::Token(cmd) => token::run(&ctx, cmd).await,
        Cmd::Apply(args) => apply::run(&ctx, args).await,
        Cmd::Diff(args) => diff::run(&ctx, args).await,
        Cmd::Get(cmd) => get::run(&ctx, cmd).await,
        Cmd::State(cmd) => state::run(&ctx, cmd).await,
        Cmd::Delete(cmd) => delete::run(&ctx, cmd).await,
        Cmd::Tenants(cmd) => tenants::run(&ctx, cmd).await,
        Cmd::Audit(cmd) => audit::run(&ctx, cmd).await,
        Cmd::Events(args) => events::run(&ctx, args).await,
        Cmd::Webhooks(cmd) => webhooks::run(&ctx, cmd).await,
        Cmd::Backup(cmd) => backup::run(&ctx, cmd).await,
        Cmd::Status => status::run(&ctx).await,
        Cmd::Whoami => whoami::run(&ctx).await,
        Cmd::Config(cmd) => config::run(&ctx, cmd),
        Cmd::Bench(cmd) => bench::run(&ctx, cmd).await,
        Cmd::Chaos(cmd) => chaos::run(&ctx, cmd).await,
        Cmd::Completions(args) => completions::run(args),
    }
}
