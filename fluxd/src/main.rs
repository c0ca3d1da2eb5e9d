//! `fluxd`, the FluxForge control-plane node. It owns nothing but wiring: it reads its
//! configuration, opens the store chosen by `--store`, starts the flux-core services and serves
//! the HTTPS API. Every rule it enforces lives in `flux-core`.

mod api;
mod history;
mod inboxes;
mod metrics;
mod middleware;
mod state;
mod store_metrics;
mod tasks;
mod tls;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use flux_core::auth::{Authenticator, Role, SigningKey};
use flux_core::jobs::{Jobs, JobsConfig};
use flux_core::model::parse_duration;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// FluxForge control-plane node.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to serve HTTPS on.
    #[arg(long, env = "FLUX_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,
    /// Directory for the embedded store, generated keys, certificates and the admin token.
    #[arg(long, env = "FLUX_DATA_DIR", default_value = "fluxd-data")]
    data_dir: PathBuf,
    /// Store: `redb:PATH` (default `redb:<data-dir>/flux.redb`) or `redis://HOST:PORT/DB`.
    #[arg(long, env = "FLUX_STORE")]
    store: Option<String>,
    /// PEM certificate chain to serve; without it fluxd makes a local CA in the data dir.
    #[arg(long, env = "FLUX_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "FLUX_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Extra names (DNS or IP) for the generated server certificate.
    #[arg(long = "tls-san", env = "FLUX_TLS_SANS", value_delimiter = ',')]
    tls_sans: Vec<String>,
    /// JWT signing key file (created with mode 0600 if missing).
    #[arg(long, env = "FLUX_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Identifier of this node (default: host name and a random suffix).
    #[arg(long, env = "FLUX_NODE_ID")]
    node_id: Option<String>,
    /// JWT issuer.
    #[arg(long, env = "FLUX_ISSUER", default_value = "fluxforge")]
    issuer: String,
    /// JWT audience.
    #[arg(long, env = "FLUX_AUDIENCE", default_value = "fluxforge")]
    audience: String,
    /// An agent silent this long is unreachable (its tasks are kept).
    #[arg(long, env = "FLUX_UNREACHABLE_AFTER", default_value = "6s", value_parser = parse_duration)]
    unreachable_after: Duration,
    /// An agent silent this long is dead (its tasks are requeued).
    #[arg(long, env = "FLUX_DEAD_AFTER", default_value = "15s", value_parser = parse_duration)]
    dead_after: Duration,
    /// A task not started this long after assignment is requeued.
    #[arg(long, env = "FLUX_START_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    start_timeout: Duration,
    /// Heartbeat interval asked of agents.
    #[arg(long, env = "FLUX_HEARTBEAT_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    heartbeat_interval: Duration,
    /// How often the leader sweeps agent liveness and requeues.
    #[arg(long, env = "FLUX_SWEEP_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    sweep_interval: Duration,
    /// Output bytes stored per attempt; the rest is dropped with a visible marker.
    #[arg(long, env = "FLUX_OUTPUT_CAP_BYTES", default_value_t = 1024 * 1024)]
    output_cap_bytes: u64,
    /// Largest request body accepted.
    #[arg(long, env = "FLUX_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Leader lease TTL: after a crash of the leader another node leads within TTL + retry.
    #[arg(long, env = "FLUX_LEASE_TTL", value_parser = parse_duration, default_value = "3s")]
    lease_ttl: Duration,
    /// How often the leader renews its lease.
    #[arg(long, env = "FLUX_LEASE_RENEW", value_parser = parse_duration, default_value = "1s")]
    lease_renew: Duration,
    /// How often a follower tries to take the lease.
    #[arg(long, env = "FLUX_LEASE_RETRY", value_parser = parse_duration, default_value = "250ms")]
    lease_retry: Duration,
    /// Ordinary requests served at once; more are answered 429 with Retry-After.
    #[arg(long, env = "FLUX_MAX_REQUESTS", default_value_t = 512)]
    max_requests: usize,
    /// Long-polls (job waits, followed logs) held at once; agents' task polls get a pool as large.
    #[arg(long, env = "FLUX_MAX_LONG_POLLS", default_value_t = 8192)]
    max_long_polls: usize,
    /// Agent registrations processed at once (spreads out a reconnecting fleet).
    #[arg(long, env = "FLUX_MAX_REGISTRATIONS", default_value_t = 32)]
    max_registrations: usize,
    /// Largest backup accepted by `POST /v1/backup/restore`.
    #[arg(long, env = "FLUX_MAX_RESTORE_BYTES", default_value_t = 1024 * 1024 * 1024)]
    max_restore_bytes: usize,
    /// Write scheduled backups (while this node leads) into this directory.
    #[arg(long, env = "FLUX_BACKUP_DIR")]
    backup_dir: Option<PathBuf>,
    /// How often to write a scheduled backup.
    #[arg(long, env = "FLUX_BACKUP_EVERY", value_parser = parse_duration, default_value = "1h", requires = "backup_dir")]
    backup_every: Duration,
    /// How many scheduled backups to keep (the oldest are removed).
    #[arg(
        long,
        env = "FLUX_BACKUP_KEEP",
        default_value_t = 24,
        requires = "backup_dir"
    )]
    backup_keep: usize,
    /// How often the leader verifies every tenant's audit chain.
    #[arg(long, env = "FLUX_AUDIT_VERIFY_EVERY", value_parser = parse_duration, default_value = "5m")]
    audit_verify_every: Duration,
    /// Append this node's history (leader writes with their epochs, recorded attempt results)
    /// to this file as JSON lines, for `fluxctl chaos run` to check.
    #[arg(long, env = "FLUX_HISTORY_LOG")]
    history_log: Option<PathBuf>,
    /// TESTING ONLY: leader writes are not fenced. Exists for chaos runs (with
    /// --unsafe-ignore-lease it lets two leaders write at once, which their checker must catch).
    #[arg(long, hide = true, requires = "history_log")]
    unsafe_no_fencing: bool,
    /// TESTING ONLY: a leader that loses its lease keeps its term's work until a write of it is
    /// fenced, as a leader would that trusted its lease after a pause. Exists for chaos runs.
    #[arg(long, hide = true, requires = "history_log")]
    unsafe_ignore_lease: bool,
    /// Log format.
    #[arg(long, env = "FLUX_LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating data directory {}", dir.display()))?;
    }
    Ok(())
}

/// Writes the bootstrap admin token (tenant `default`) unless one exists.
fn ensure_admin_token(auth: &Authenticator, path: &Path) -> Result<bool> {
    if path.exists() {
        return Ok(false);
    }
    let (token, _) = auth
        .issue(
            "bootstrap-admin",
            "default",
            Role::Admin,
            Duration::from_secs(365 * 24 * 3600),
            None,
        )
        .context("issuing the bootstrap admin token")?;
    flux_core::files::create_private(path, format!("{token}\n").as_bytes())
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(true)
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "fluxd".into());
    let suffix: u32 = rand::random();
    format!("{host}-{:06x}", suffix & 0xff_ffff)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

async fn run(args: Args) -> Result<ExitCode> {
    create_private_dir(&args.data_dir)?;
    let spec = args
        .store
        .clone()
        .unwrap_or_else(|| format!("redb:{}", args.data_dir.join("flux.redb").display()));
    let store = flux_core::store::open(&spec)
        .await
        .with_context(|| "opening the store")?;
    tracing::info!(backend = store.backend(), "store open");

    let key_path = args
        .signing_key
        .clone()
        .unwrap_or_else(|| args.data_dir.join("signing-key.json"));
    let (key, created) = SigningKey::load_or_create(&key_path)?;
    let audit_key = key
        .derive("fluxforge audit chain v1")
        .context("deriving the audit key")?;
    if created {
        tracing::info!(path = %key_path.display(), "created JWT signing key");
    }
    let auth = Authenticator::new(vec![key], &args.issuer, &args.audience);
    let admin_path = args.data_dir.join("admin.token");
    if ensure_admin_token(&auth, &admin_path)? {
        tracing::info!(path = %admin_path.display(), "wrote bootstrap admin token (tenant default)");
    }

    let files = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: None,
        },
        _ => {
            let (files, created) = tls::ensure_local_ca(&args.data_dir, &args.tls_sans)?;
            if let Some(ca) = &files.ca {
                tracing::info!(ca = %ca.display(), created, "serving a certificate from the local CA; clients trust it with --ca");
            }
            files
        }
    };
    let tls_config =
        axum_server::tls_rustls::RustlsConfig::from_config(tls::server_config(&files)?);

    let metrics = Arc::new(metrics::Metrics::new());
    let node_id = args.node_id.clone().unwrap_or_else(default_node_id);
    let history = match &args.history_log {
        Some(p) => Some(Arc::new(
            history::History::open(p, &node_id)
                .with_context(|| format!("opening history log {}", p.display()))?,
        )),
        None => None,
    };
    if args.unsafe_no_fencing {
        tracing::error!("--unsafe-no-fencing: leader writes are NOT fenced. Testing only.");
    }
    if args.unsafe_ignore_lease {
        tracing::error!(
            "--unsafe-ignore-lease: leader work does not stop when the lease is lost. Testing only."
        );
    }
    let store = store_metrics::Timed::wrap(
        store,
        metrics.store_ops.clone(),
        history.clone(),
        args.unsafe_no_fencing,
    );
    let jobs = Jobs::new(
        store.clone(),
        JobsConfig {
            output_cap_bytes: args.output_cap_bytes,
            start_timeout: args.start_timeout,
            unreachable_after: args.unreachable_after,
            dead_after: args.dead_after,
            heartbeat_interval: args.heartbeat_interval,
            ..JobsConfig::default()
        },
    );
    let state = Arc::new(state::AppState::new(
        node_id.clone(),
        store,
        jobs,
        auth,
        metrics,
        audit_key,
        history,
    ));
    let app = api::app(
        state.clone(),
        &api::ApiLimits {
            max_body_bytes: args.max_body_bytes,
            max_restore_bytes: args.max_restore_bytes,
            max_requests: args.max_requests,
            max_long_polls: args.max_long_polls,
            max_registrations: args.max_registrations,
        },
    );

    let cancel = CancellationToken::new();
    let lease_cfg = flux_core::lease::LeaseConfig {
        ttl: args.lease_ttl,
        renew_every: args.lease_renew,
        retry_every: args.lease_retry,
        safety_margin: args.lease_ttl / 6,
    };
    lease_cfg
        .validate()
        .map_err(|e| anyhow::anyhow!("lease settings: {e}"))?;
    let leader = tokio::spawn(tasks::leader::run_leader(
        state.clone(),
        cancel.clone(),
        args.sweep_interval,
        lease_cfg,
        args.unsafe_ignore_lease,
    ));
    let record = tokio::spawn(tasks::node_record::run_node_record(
        state.clone(),
        cancel.clone(),
    ));
    // The hub serves polls until the server has stopped, graceful drain included.
    let hub_stop = CancellationToken::new();
    let hub = tokio::spawn(
        state
            .inboxes
            .clone()
            .run(state.store.subscribe(), hub_stop.clone()),
    );
    if args.audit_verify_every.is_zero() {
        anyhow::bail!("--audit-verify-every must be above zero");
    }
    tokio::spawn(tasks::integrity::run_integrity_checks(
        state.clone(),
        args.audit_verify_every,
        cancel.clone(),
    ));
    if let Some(dir) = &args.backup_dir {
        if args.backup_keep == 0 || args.backup_every.is_zero() {
            anyhow::bail!("--backup-keep and --backup-every must be above zero");
        }
        tokio::spawn(tasks::backups::run_scheduled(
            state.clone(),
            tasks::backups::Schedule {
                dir: dir.clone(),
                every: args.backup_every,
                keep: args.backup_keep,
            },
            cancel.clone(),
        ));
    }

    let listener = std::net::TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let c = cancel.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        c.cancel();
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    tracing::info!(node = %node_id, addr = %args.listen, "fluxd serving https");
    axum_server::from_tcp_rustls(listener, tls_config)?
        // Small request/response exchanges must not wait on Nagle + delayed ACK (~40 ms each).
        .map(|tls| tls.acceptor(axum_server::accept::NoDelayAcceptor::new()))
        .handle(handle)
        .serve(app.into_make_service())
        .await
        .context("server failed")?;
    cancel.cancel();
    hub_stop.cancel();
    if let Err(e) = hub.await {
        tracing::error!(error = %e, "the inbox hub failed");
    }
    let _ = leader.await;
    let _ = record.await;
    tracing::info!("fluxd stopped");
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    init_tracing(args.log_format);
    match run(args).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("fluxd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
