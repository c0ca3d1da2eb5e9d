//! One fluxd node's life: [`run`] prepares the data dir, opens the store, loads the keys and
//! the TLS certificate, builds the [`AppState`], spawns the background tasks, serves the API
//! until `shutdown`, then drains (graceful shutdown of connections, tasks stopped, the lease
//! released, the node record removed).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum_server::tls_rustls::RustlsConfig;
use flux_core::auth::{Authenticator, Role, SigningKey};
use flux_core::jobs::Jobs;
use flux_core::store::DynStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{NodeConfig, TlsSource};
use crate::conns::{CapAcceptor, ConnCaps, ConnLimits};
use crate::state::AppState;
use crate::{api, history, metrics, store_layers, tasks, tls};

/// Runs the node described by `cfg` until `shutdown` completes.
pub async fn run(
    cfg: NodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let nofile = raise_nofile_limit();
    // The data dir holds only FluxForge's own secrets (keys, tokens, the store, checkpoints):
    // made 0700, and an existing one that group or others may enter is narrowed to 0700.
    flux_core::files::create_private_dir(&cfg.data_dir)
        .with_context(|| format!("preparing data directory {}", cfg.data_dir.display()))?;
    let store = flux_core::store::open_with(&cfg.store, &cfg.store_options)
        .await
        .with_context(|| "opening the store")?;
    tracing::info!(backend = store.backend(), "store open");
    let (auth, audit_key) = load_keys(&cfg)?;
    let tls_config = RustlsConfig::from_config(tls::server_config(&tls_files(&cfg)?)?);
    let state = build_state(&cfg, store, auth, audit_key)?;
    // Audit checkpoints live beside the keys, outside the store, so rewriting the store
    // cannot undo them.
    let checkpoints = cfg.data_dir.join("audit-checkpoints.json");
    state
        .audit
        .load_checkpoints(&checkpoints)
        .with_context(|| format!("reading {}", checkpoints.display()))?;
    let app = api::app(state.clone(), &cfg.api);

    let cancel = CancellationToken::new();
    let tasks = Tasks::spawn(&state, &cfg, &cancel);

    let listener = std::net::TcpListener::bind(cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    listener.set_nonblocking(true)?;
    let metrics_listener = match cfg.server.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for metrics"))?,
        ),
        None => None,
    };
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    let c = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        c.cancel();
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    if let Some(l) = metrics_listener {
        let app = api::metrics_app(state.metrics.clone());
        let c = cancel.clone();
        tracing::info!(addr = %cfg.server.metrics_listen.expect("set"), "serving /metrics over plain HTTP without a token");
        tokio::spawn(async move {
            let r = axum::serve(l, app)
                .with_graceful_shutdown(c.cancelled_owned())
                .await;
            if let Err(e) = r {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let limits = ConnLimits {
        total: effective_total(cfg.server.conns.total, nofile),
        ..cfg.server.conns
    };
    tracing::info!(node = %cfg.node_id, addr = %cfg.listen, max_connections = limits.total, max_connections_per_ip = limits.per_ip, "fluxd serving https");
    let caps = ConnCaps::new(limits);
    let mut server = axum_server::from_tcp_rustls(listener, tls_config)?
        // Small request/response exchanges must not wait on Nagle + delayed ACK (~40 ms each).
        // Connections over the caps are closed before their TLS handshake.
        .map(|tls| {
            tls.acceptor(CapAcceptor::new(
                axum_server::accept::NoDelayAcceptor::new(),
                caps,
                cfg.server.idle_timeout,
            ))
        })
        .handle(handle)
        // A connection that has done its TLS handshake but not sent a whole first request
        // (either protocol) in this time is closed: no slowloris on a half-sent request.
        .first_request_timeout(cfg.server.header_read_timeout);
    // HTTP/1 headers have the same time limit, which also bounds an idle keep-alive
    // connection (hyper waits for the next request's headers under that timer); HTTP/2 has
    // keep-alive pings and a cap on concurrent streams; a connection of either with no request
    // in flight for --idle-timeout is closed by the acceptor's idle watch (`idle.rs`).
    let b = server.http_builder();
    b.http1()
        .header_read_timeout(Some(cfg.server.header_read_timeout));
    b.http2()
        .keep_alive_interval(Some(H2_KEEP_ALIVE))
        .keep_alive_timeout(H2_KEEP_ALIVE)
        .max_concurrent_streams(Some(H2_MAX_STREAMS));
    server
        .serve(app.into_make_service())
        .await
        .context("server failed")?;
    cancel.cancel();
    tasks.drain().await;
    tracing::info!("fluxd stopped");
    Ok(())
}

/// Listener settings of a node (its `--header-read-timeout`, `--max-connections*`,
/// `--metrics-listen` and `--gauges-every` arguments).
#[derive(Clone, Copy, Debug)]
pub struct ServerSettings {
    pub header_read_timeout: Duration,
    /// A connection with no request in flight for this long is closed (either protocol).
    pub idle_timeout: Duration,
    pub conns: ConnLimits,
    pub metrics_listen: Option<SocketAddr>,
    pub gauges_every: Duration,
}

/// HTTP/2 keep-alive: a ping after this much silence, and the connection closed when it is not
/// answered within the same time (a vanished peer does not hold its connection forever).
pub const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// Streams one HTTP/2 connection may have open at once.
pub const H2_MAX_STREAMS: u32 = 200;

/// Descriptors kept free of connections: the store, logs, the metrics listener, backups.
pub const FD_RESERVE: u64 = 64;

/// The connection cap actually applied: the configured one, but never more than the
/// descriptor limit (`nofile`, when known) leaves after [`FD_RESERVE`].
pub fn effective_total(configured: usize, nofile: Option<u64>) -> usize {
    match nofile {
        Some(n) => configured.min(n.saturating_sub(FD_RESERVE).max(1) as usize),
        None => configured,
    }
}

/// Raises the soft limit on open descriptors to the hard limit (Rust does not, and a systemd
/// default of 1024 is soon reached by connections). Returns the soft limit now in force.
fn raise_nofile_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-file limit");
            return None;
        }
    };
    if soft >= hard {
        return Some(soft);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "raised the open-file limit");
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
            Some(soft)
        }
    }
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// The JWT signing keys (the active one created if missing, then the retired ones kept for
/// verification), the audit key derived from `--audit-key`, and the bootstrap admin token in
/// the data dir.
fn load_keys(cfg: &NodeConfig) -> Result<(Authenticator, [u8; 32])> {
    let mut paths = vec![cfg.signing_key.clone()];
    paths.extend(cfg.verify_keys.iter().cloned());
    let (keys, created) = flux_core::auth::load_key_ring(&paths)?;
    if created {
        tracing::info!(path = %cfg.signing_key.display(), "created JWT signing key");
    }
    let audit_source = match paths.iter().position(|p| *p == cfg.audit_key) {
        Some(i) => keys[i].clone(),
        None => SigningKey::load(&cfg.audit_key).context("loading --audit-key")?,
    };
    let audit_key = audit_source
        .derive(flux_core::audit::KEY_PURPOSE)
        .context("deriving the audit key")?;
    let auth = Authenticator::new(keys, &cfg.issuer, &cfg.audience);
    tracing::info!(active = auth.active_kid(), verifying = ?auth.kids(), "JWT signing keys loaded");
    let admin_path = cfg.data_dir.join("admin.token");
    if ensure_admin_token(&auth, &admin_path)? {
        tracing::info!(path = %admin_path.display(), "wrote bootstrap admin token (tenant default)");
    }
    Ok((auth, audit_key))
}

/// Writes the bootstrap admin token (tenant `default`) unless one exists that is still valid:
/// one signed by a key no longer listed, or expired, is replaced.
fn ensure_admin_token(auth: &Authenticator, path: &Path) -> Result<bool> {
    if let Ok(old) = std::fs::read_to_string(path) {
        match auth.verify(old.trim()) {
            Err(
                e @ (flux_core::auth::AuthError::UnknownKey(_)
                | flux_core::auth::AuthError::Expired),
            ) => {
                tracing::warn!(path = %path.display(), reason = %e, "replacing the bootstrap admin token");
                std::fs::remove_file(path)
                    .with_context(|| format!("removing {}", path.display()))?;
            }
            _ => return Ok(false),
        }
    } else if path.exists() {
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

/// The certificate to serve: the given files, or one from the local CA in the data dir.
fn tls_files(cfg: &NodeConfig) -> Result<tls::TlsFiles> {
    Ok(match &cfg.tls {
        TlsSource::Files { cert, key } => tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: None,
        },
        TlsSource::LocalCa { sans } => {
            let (files, created) = tls::ensure_local_ca(&cfg.data_dir, sans)?;
            if let Some(ca) = &files.ca {
                tracing::info!(ca = %ca.display(), created, "serving a certificate from the local CA; clients trust it with --ca");
            }
            files
        }
    })
}

/// The node state over the store, wrapped in its metrics (and, for chaos runs, history)
/// layer.
fn build_state(
    cfg: &NodeConfig,
    store: DynStore,
    auth: Authenticator,
    audit_key: [u8; 32],
) -> Result<Arc<AppState>> {
    let metrics = Arc::new(metrics::Metrics::new());
    metrics.watch_commits(store.clone());
    let history = match &cfg.history_log {
        Some(p) => Some(Arc::new(
            history::History::open(p, &cfg.node_id)
                .with_context(|| format!("opening history log {}", p.display()))?,
        )),
        None => None,
    };
    if cfg.unsafe_no_fencing {
        tracing::error!("--unsafe-no-fencing: leader writes are NOT fenced. Testing only.");
    }
    if cfg.unsafe_ignore_lease {
        tracing::error!(
            "--unsafe-ignore-lease: leader work does not stop when the lease is lost. Testing only."
        );
    }
    let store = store_layers::Timed::wrap(store, metrics.store_ops.clone());
    let store = crate::events_metric::EventCount::wrap(store, metrics.events.clone());
    let store = store_layers::Fencing::wrap(store, history.clone(), cfg.unsafe_no_fencing);
    let jobs = Jobs::new(store.clone(), cfg.jobs.clone());
    let mut state = AppState::new(
        cfg.node_id.clone(),
        store,
        jobs,
        auth,
        metrics,
        audit_key,
        history,
    );
    state.max_follow = cfg.max_follow;
    state.gc_max_lag = cfg.gc_max_lag;
    state.events_max_lag = cfg.events_max_lag;
    state.webhooks = cfg.webhooks.clone();
    state.schedules = flux_core::schedule::Schedules::new(
        state.store.clone(),
        state.jobs.clone(),
        cfg.min_schedule_interval.as_millis() as u64,
    );
    state.agent_credential_ttl = cfg.agent_credential_ttl;
    state.disk = cfg
        .disk
        .clone()
        .map(|(dir, min)| crate::disk::DiskGuard::new(dir, min));
    Ok(Arc::new(state))
}

/// The background tasks that are waited for at shutdown.
struct Tasks {
    leader: JoinHandle<()>,
    record: JoinHandle<()>,
    /// The inbox and job waiter hubs and the revocation follower: they serve requests until
    /// the server has stopped.
    hubs: Vec<JoinHandle<()>>,
    hub_stop: CancellationToken,
}

impl Tasks {
    /// Starts the leader driver, the node record, the liveness records, the inbox and job
    /// waiter hubs, the revocation follower, the integrity checks and the scheduled backups; all
    /// but the hubs and the revocation follower stop on `cancel`.
    fn spawn(st: &Arc<AppState>, cfg: &NodeConfig, cancel: &CancellationToken) -> Tasks {
        let leader = tokio::spawn(tasks::leader::run_leader(
            st.clone(),
            cancel.clone(),
            cfg.sweep_interval,
            cfg.lease,
            cfg.unsafe_ignore_lease,
            cfg.gc.clone(),
        ));
        let record = tokio::spawn(tasks::node_record::run_node_record(
            st.clone(),
            cancel.clone(),
        ));
        // The hub serves polls until the server has stopped, graceful drain included.
        let hub_stop = CancellationToken::new();
        let hub = tokio::spawn(
            st.inboxes
                .clone()
                .run(st.store.subscribe(), hub_stop.clone()),
        );
        tokio::spawn(tasks::liveness::run_liveness(
            st.clone(),
            tasks::liveness::publish_every(&cfg.jobs),
            cancel.clone(),
        ));
        let job_hub = tokio::spawn(
            st.job_waiters
                .clone()
                .run(st.store.subscribe(), hub_stop.clone()),
        );
        // Token checks are answered from memory; until its first load they read the store.
        let revocations = tokio::spawn(flux_core::revocations::follow(
            st.revocations.clone(),
            st.store.clone(),
            st.store.subscribe(),
            hub_stop.clone(),
        ));
        tokio::spawn(tasks::gauges::run_gauges(
            st.clone(),
            cfg.server.gauges_every,
            cancel.clone(),
        ));
        tokio::spawn(tasks::integrity::run_integrity_checks(
            st.clone(),
            cfg.audit_verify_every,
            cfg.audit_retention,
            cancel.clone(),
        ));
        if let Some(schedule) = &cfg.backups {
            tokio::spawn(tasks::backups::run_scheduled(
                st.clone(),
                schedule.clone(),
                cancel.clone(),
            ));
        }
        Tasks {
            leader,
            record,
            hubs: vec![hub, job_hub, revocations],
            hub_stop,
        }
    }

    /// After the server stopped (and `cancel` fired): stops the hubs and waits for the tasks
    /// that release the lease and remove the node record.
    async fn drain(self) {
        self.hub_stop.cancel();
        for hub in self.hubs {
            if let Err(e) = hub.await {
                tracing::error!(error = %e, "a request hub failed");
            }
        }
        let _ = self.leader.await;
        let _ = self.record.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_cap_stays_under_the_descriptor_limit() {
        assert_eq!(
            effective_total(8192, Some(1024)),
            1024 - FD_RESERVE as usize
        );
        assert_eq!(effective_total(100, Some(1024)), 100);
        assert_eq!(effective_total(8192, None), 8192);
        assert_eq!(effective_total(8192, Some(10)), 1);
    }
}
