//! `fluxd`, the FluxForge control-plane node. It owns nothing but wiring: it reads its
//! configuration, opens the store chosen by `--store`, starts the flux-core services and serves
//! the HTTPS API. Every rule it enforces lives in `flux-core`.

mod api;
mod config;
mod conns;
mod disk;
mod error;
mod events_metric;
mod history;
mod idle;
mod inboxes;
mod logfmt;
mod metrics;
mod middleware;
mod node;
mod state;
mod store_layers;
mod tasks;
mod tls;
mod waiters;

use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: under load, glibc's malloc spent about a fifth of
/// fluxd's samples in its own code and arena-lock waits (`scripts/profile.sh`; README, engine
/// figures).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let args = config::Args::parse();
    config::init_tracing(args.log_format);
    // Every argument is checked before anything is created or opened.
    let result = match args.validate() {
        Ok(cfg) => node::run(cfg, node::shutdown_signal()).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fluxd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
