//! The command line of `fluxd` ([`Args`]) and its validation into a [`NodeConfig`]: every
//! argument is checked here, before anything is created or opened, so a bad value fails the
//! start with nothing touched. Defaults that depend on other arguments (the store under the
//! data dir, the signing key path, the node id) are resolved here too.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, ValueEnum};
use flux_core::jobs::JobsConfig;
use flux_core::lease::LeaseConfig;
use flux_core::model::parse_duration;

use crate::api::ApiLimits;
use crate::tasks::backups::Schedule;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// FluxForge control-plane node.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
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
    /// JWT signing key file. Repeat it (or give a comma-separated list) to rotate keys: the
    /// first signs new tokens (it is created with mode 0600 if missing), every one listed
    /// verifies; a token whose key is no longer listed is refused.
    #[arg(long, env = "FLUX_SIGNING_KEY", value_delimiter = ',')]
    signing_key: Vec<PathBuf>,
    /// Key file the audit chain's MAC key is derived from (default: the last --signing-key,
    /// so a single key keeps its chains). Keep it when retiring the key the chains began with.
    #[arg(long, env = "FLUX_AUDIT_KEY")]
    audit_key: Option<PathBuf>,
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
    /// Submissions are refused (507) while the filesystem of the embedded store has less free
    /// space than this (`0` turns it off; not used with Redis). Units: KiB, MiB, GiB, TiB.
    #[arg(long, env = "FLUX_MIN_FREE_DISK", default_value = "64MiB", value_parser = crate::disk::parse_bytes)]
    min_free_disk: u64,
    /// Memory for the embedded store's page cache (its reads and its write buffer together),
    /// at least 1MiB. Reads past it are served by the kernel's page cache. Not used with
    /// Redis. Units: KiB, MiB, GiB.
    #[arg(long, env = "FLUX_STORE_CACHE", default_value = "256MiB", value_parser = parse_store_cache)]
    store_cache: u64,
    /// Largest request body accepted.
    #[arg(long, env = "FLUX_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Leader lease TTL: after a crash of the leader another node leads within TTL + retry.
    #[arg(long, env = "FLUX_LEASE_TTL", value_parser = parse_duration, default_value = "1500ms")]
    lease_ttl: Duration,
    /// How often the leader renews its lease.
    #[arg(long, env = "FLUX_LEASE_RENEW", value_parser = parse_duration, default_value = "400ms")]
    lease_renew: Duration,
    /// How often a follower tries to take the lease.
    #[arg(long, env = "FLUX_LEASE_RETRY", value_parser = parse_duration, default_value = "100ms")]
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
    /// Agent protocol calls (heartbeats, attempt start, output and result) served at once.
    #[arg(long, env = "FLUX_MAX_AGENT_REQUESTS", default_value_t = 512)]
    max_agent_requests: usize,
    /// Largest share of each of those pools one tenant may hold, in percent.
    #[arg(long, env = "FLUX_TENANT_SHARE", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100))]
    tenant_share: u32,
    /// Largest share of each of those pools one token may hold, in percent.
    #[arg(long, env = "FLUX_TOKEN_SHARE", default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=100))]
    token_share: u32,
    /// Time a request body has to arrive once admitted; slower ones get 408.
    #[arg(long, env = "FLUX_BODY_READ_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    body_read_timeout: Duration,
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
    /// Prune audit records older than this once they were exported (`fluxctl audit export`);
    /// 0 keeps every record. Records that were not exported are never pruned.
    #[arg(long, env = "FLUX_AUDIT_RETENTION", value_parser = parse_duration, default_value = "0")]
    audit_retention: Duration,
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
    /// Time a client has to send a request's headers once connected (TLS done), and that an
    /// idle HTTP/1 keep-alive connection stays open.
    #[arg(long, env = "FLUX_HEADER_READ_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    header_read_timeout: Duration,
    /// A connection (HTTP/1 or HTTP/2) with no request in flight for this long is closed;
    /// keep-alive pings do not count. A followed log or a long-poll is in flight throughout.
    #[arg(long, env = "FLUX_IDLE_TIMEOUT", value_parser = parse_duration, default_value = "90s")]
    idle_timeout: Duration,
    /// Connections open at once (at most the descriptor limit less a reserve); more are closed
    /// when accepted.
    #[arg(long, env = "FLUX_MAX_CONNECTIONS", default_value_t = 8192)]
    max_connections: usize,
    /// Connections open at once from one client address (raise it behind a load balancer).
    #[arg(long, env = "FLUX_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    max_connections_per_ip: usize,
    /// Longest a followed log stream lasts; it then ends with a line asking to reconnect.
    #[arg(long, env = "FLUX_MAX_FOLLOW", value_parser = parse_duration, default_value = "1h")]
    max_follow: Duration,
    /// A followed event stream (`GET /v1/events`) more than this many revisions behind the
    /// tenant's newest event is ended with `event: end` (`slow_client`); it resumes with its id.
    #[arg(long, env = "FLUX_EVENTS_MAX_LAG", default_value_t = crate::api::events::DEFAULT_MAX_LAG)]
    events_max_lag: u64,
    /// Let webhooks reach loopback, private and link-local addresses (refused by default, so a
    /// tenant cannot point the control plane at internal services).
    #[arg(long, env = "FLUX_WEBHOOK_ALLOW_PRIVATE")]
    webhook_allow_private: bool,
    /// Time limit of each webhook request.
    #[arg(long, env = "FLUX_WEBHOOK_TIMEOUT", value_parser = parse_duration, default_value = "10s")]
    webhook_timeout: Duration,
    /// Most events kept in each tenant's event log; older ones are collected by the leader.
    #[arg(long, env = "FLUX_EVENT_RETENTION_COUNT", default_value_t = flux_core::events::DEFAULT_MAX_EVENTS)]
    event_retention_count: u64,
    /// Longest an event is kept in the event log.
    #[arg(long, env = "FLUX_EVENT_RETENTION", value_parser = parse_duration, default_value = "7d")]
    event_retention: Duration,
    /// Lifetime of the credential an agent gets when it enrolls or renews (it renews itself
    /// once two thirds of it have passed). Between 10s and 30 days.
    #[arg(long, env = "FLUX_AGENT_CREDENTIAL_TTL", value_parser = parse_duration, default_value = "24h")]
    agent_credential_ttl: Duration,
    /// Also serve `/metrics` without a token, over plain HTTP, on this address (keep it on
    /// loopback or a private network). The API listener's `/metrics` needs a token.
    #[arg(long, env = "FLUX_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// How often the leader recomputes the cluster gauges (agents, queue depth, state targets).
    #[arg(long, env = "FLUX_GAUGES_EVERY", value_parser = parse_duration, default_value = "5s")]
    gauges_every: Duration,
    /// Finished jobs (with their attempts, output and secrets) are deleted this long after they
    /// ended (a tenant's quota may override it).
    #[arg(long, env = "FLUX_JOB_RETENTION", value_parser = parse_duration, default_value = "7d")]
    job_retention: Duration,
    /// Finished jobs kept per tenant at most, newest first (a tenant's quota may override it).
    #[arg(long, env = "FLUX_JOB_RETENTION_COUNT", default_value_t = flux_core::retention::DEFAULT_JOB_RETENTION_COUNT)]
    job_retention_count: u64,
    /// Finished reconciler jobs kept per desired-state target (agent and command).
    #[arg(long, env = "FLUX_RECONCILER_JOBS_KEPT", default_value_t = flux_core::retention::DEFAULT_RECONCILER_KEEP)]
    reconciler_jobs_kept: u64,
    /// How long an idempotency key returns its first job; after it the key may name a new one.
    #[arg(long, env = "FLUX_IDEMPOTENCY_WINDOW", value_parser = parse_duration, default_value = "24h")]
    idempotency_window: Duration,
    /// Dead agents are deleted this long after they were last seen.
    #[arg(long, env = "FLUX_DEAD_AGENT_RETENTION", value_parser = parse_duration, default_value = "7d")]
    dead_agent_retention: Duration,
    /// How often the leader runs a garbage-collection pass.
    #[arg(long, env = "FLUX_GC_INTERVAL", value_parser = parse_duration, default_value = "60s")]
    gc_interval: Duration,
    /// Submissions of a tenant are refused (429) once its collector has been behind for this
    /// long: deleting page after page of expired jobs without reaching young ones, i.e.
    /// falling behind the load (`0` turns it off).
    #[arg(long, env = "FLUX_GC_MAX_LAG", value_parser = parse_duration, default_value = "1h")]
    gc_max_lag: Duration,
    /// Objects of each kind (jobs, agents, idempotency keys) looked at per tenant and pass.
    #[arg(long, env = "FLUX_GC_BATCH", default_value_t = flux_core::retention::DEFAULT_GC_BATCH)]
    gc_batch: usize,
    /// Schedules firing more often than this are refused.
    #[arg(long, env = "FLUX_MIN_SCHEDULE_INTERVAL", value_parser = parse_duration, default_value = "1m")]
    min_schedule_interval: Duration,
    /// Log format.
    #[arg(long, env = "FLUX_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// Where the served certificate comes from.
#[derive(Debug)]
pub enum TlsSource {
    /// `--tls-cert` and `--tls-key`.
    Files { cert: PathBuf, key: PathBuf },
    /// A local CA in the data dir, with these extra names (`--tls-san`).
    LocalCa { sans: Vec<String> },
}

/// A node's validated configuration: what `node::run` starts from.
pub struct NodeConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// The store spec (`redb:PATH` or `redis://...`), the data dir's redb file by default.
    pub store: String,
    /// How the store is opened (the embedded store's cache).
    pub store_options: flux_core::store::OpenOptions,
    pub tls: TlsSource,
    /// The active signing key (signs new tokens; created if missing).
    pub signing_key: PathBuf,
    /// Retired keys still accepted for verification, in the order given.
    pub verify_keys: Vec<PathBuf>,
    /// The key the audit MAC key is derived from.
    pub audit_key: PathBuf,
    pub node_id: String,
    pub issuer: String,
    pub audience: String,
    pub jobs: JobsConfig,
    pub api: ApiLimits,
    pub lease: LeaseConfig,
    pub sweep_interval: Duration,
    pub audit_verify_every: Duration,
    /// `--audit-retention`, when set.
    pub audit_retention: Option<Duration>,
    pub backups: Option<Schedule>,
    pub history_log: Option<PathBuf>,
    pub unsafe_no_fencing: bool,
    pub unsafe_ignore_lease: bool,
    /// Listener settings: timeouts, connection caps, the metrics listener.
    pub server: crate::node::ServerSettings,
    pub max_follow: Duration,
    pub events_max_lag: u64,
    pub webhooks: flux_core::webhooks::DeliveryConfig,
    /// Lifetime of enrolled and renewed agent credentials.
    pub agent_credential_ttl: Duration,
    /// The directory whose filesystem `--min-free-disk` watches, and the threshold (embedded
    /// store only).
    pub disk: Option<(PathBuf, u64)>,
    /// The leader's garbage collection.
    pub gc: flux_core::retention::RetentionConfig,
    /// `--min-schedule-interval`.
    pub min_schedule_interval: Duration,
    /// `--gc-max-lag`, unless off.
    pub gc_max_lag: Option<Duration>,
}

impl Args {
    /// Checks every argument and resolves the defaults that depend on others.
    pub fn validate(mut self) -> Result<NodeConfig> {
        let lease = LeaseConfig {
            ttl: self.lease_ttl,
            renew_every: self.lease_renew,
            retry_every: self.lease_retry,
            safety_margin: self.lease_ttl / 6,
        };
        lease
            .validate()
            .map_err(|e| anyhow::anyhow!("lease settings: {e}"))?;
        self.check_bounds()?;
        let gc = self.retention()?;
        let backups = self.backups()?;
        let (store, disk) = self.store();
        let (signing_key, verify_keys, audit_key) = self.keys()?;
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => TlsSource::Files { cert, key },
            _ => TlsSource::LocalCa {
                sans: self.tls_sans,
            },
        };
        Ok(NodeConfig {
            listen: self.listen,
            data_dir: self.data_dir,
            store,
            store_options: flux_core::store::OpenOptions {
                redb_cache_bytes: Some(self.store_cache as usize),
            },
            tls,
            signing_key,
            verify_keys,
            audit_key,
            node_id: self.node_id.unwrap_or_else(default_node_id),
            issuer: self.issuer,
            audience: self.audience,
            jobs: JobsConfig {
                output_cap_bytes: self.output_cap_bytes,
                start_timeout: self.start_timeout,
                unreachable_after: self.unreachable_after,
                dead_after: self.dead_after,
                heartbeat_interval: self.heartbeat_interval,
                idempotency_window: self.idempotency_window,
                ..JobsConfig::default()
            },
            api: ApiLimits {
                max_body_bytes: self.max_body_bytes,
                max_restore_bytes: self.max_restore_bytes,
                max_requests: self.max_requests,
                max_long_polls: self.max_long_polls,
                max_registrations: self.max_registrations,
                max_agent_requests: self.max_agent_requests,
                shares: crate::middleware::limits::Shares {
                    tenant_percent: self.tenant_share,
                    token_percent: self.token_share,
                },
                body_read_timeout: self.body_read_timeout,
            },
            lease,
            sweep_interval: self.sweep_interval,
            min_schedule_interval: self.min_schedule_interval,
            audit_verify_every: self.audit_verify_every,
            audit_retention: Some(self.audit_retention).filter(|d| !d.is_zero()),
            backups,
            history_log: self.history_log,
            unsafe_no_fencing: self.unsafe_no_fencing,
            unsafe_ignore_lease: self.unsafe_ignore_lease,
            server: crate::node::ServerSettings {
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                conns: crate::conns::ConnLimits {
                    total: self.max_connections,
                    per_ip: self.max_connections_per_ip,
                },
                metrics_listen: self.metrics_listen,
                gauges_every: self.gauges_every,
            },
            max_follow: self.max_follow,
            events_max_lag: self.events_max_lag.max(1),
            webhooks: flux_core::webhooks::DeliveryConfig {
                allow_private: self.webhook_allow_private,
                timeout: self.webhook_timeout.max(Duration::from_millis(100)),
                ..flux_core::webhooks::DeliveryConfig::default()
            },
            agent_credential_ttl: self.agent_credential_ttl,
            disk,
            gc,
            gc_max_lag: Some(self.gc_max_lag).filter(|d| !d.is_zero()),
        })
    }

    /// The timeouts, intervals and caps that must be above zero or within a range.
    fn check_bounds(&self) -> Result<()> {
        if self.body_read_timeout.is_zero() {
            anyhow::bail!("--body-read-timeout must be above zero");
        }
        if self.agent_credential_ttl < Duration::from_secs(10)
            || self.agent_credential_ttl > Duration::from_secs(30 * 24 * 3600)
        {
            anyhow::bail!("--agent-credential-ttl must be between 10s and 30 days");
        }
        if self.header_read_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.max_follow.is_zero()
            || self.gauges_every.is_zero()
        {
            anyhow::bail!(
                "--header-read-timeout, --idle-timeout, --max-follow and --gauges-every must be above zero"
            );
        }
        if self.max_connections == 0 || self.max_connections_per_ip == 0 {
            anyhow::bail!("--max-connections and --max-connections-per-ip must be above zero");
        }
        if self.audit_verify_every.is_zero() {
            anyhow::bail!("--audit-verify-every must be above zero");
        }
        Ok(())
    }

    /// The leader's garbage collection, checked.
    fn retention(&self) -> Result<flux_core::retention::RetentionConfig> {
        let gc = flux_core::retention::RetentionConfig {
            job_retention: self.job_retention,
            job_retention_count: self.job_retention_count,
            reconciler_keep: self.reconciler_jobs_kept,
            idempotency_window: self.idempotency_window,
            dead_agent_retention: self.dead_agent_retention,
            interval: self.gc_interval,
            batch: self.gc_batch,
            events: flux_core::events::Bounds {
                max_events: self.event_retention_count.max(1),
                max_age_ms: u64::try_from(self.event_retention.as_millis()).unwrap_or(u64::MAX),
            },
        };
        gc.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(gc)
    }

    /// Scheduled backups, when `--backup-dir` is given.
    fn backups(&mut self) -> Result<Option<Schedule>> {
        let Some(dir) = self.backup_dir.take() else {
            return Ok(None);
        };
        if self.backup_keep == 0 || self.backup_every.is_zero() {
            anyhow::bail!("--backup-keep and --backup-every must be above zero");
        }
        Ok(Some(Schedule {
            dir,
            every: self.backup_every,
            keep: self.backup_keep,
        }))
    }

    /// The store's spec (the embedded store in the data directory by default), and for the
    /// embedded store the directory `--min-free-disk` watches with its threshold.
    fn store(&mut self) -> (String, Option<(PathBuf, u64)>) {
        let store = self
            .store
            .take()
            .unwrap_or_else(|| format!("redb:{}", self.data_dir.join("flux.redb").display()));
        let disk = store
            .strip_prefix("redb:")
            .filter(|_| self.min_free_disk > 0)
            .map(|p| {
                let dir = std::path::Path::new(p)
                    .parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .map_or_else(|| PathBuf::from("."), PathBuf::from);
                (dir, self.min_free_disk)
            });
        (store, disk)
    }

    /// The key that signs (the first listed), the others that still verify, and the audit MAC
    /// key (by default the last signing key listed).
    fn keys(&mut self) -> Result<(PathBuf, Vec<PathBuf>, PathBuf)> {
        let mut keys = std::mem::take(&mut self.signing_key);
        if keys.is_empty() {
            keys.push(self.data_dir.join("signing-key.json"));
        }
        if let Some(dup) = keys
            .iter()
            .enumerate()
            .find_map(|(i, k)| keys[..i].contains(k).then_some(k))
        {
            anyhow::bail!("--signing-key {} is listed twice", dup.display());
        }
        let audit_key = self
            .audit_key
            .take()
            .unwrap_or_else(|| keys.last().expect("one key at least").clone());
        let signing_key = keys.remove(0);
        Ok((signing_key, keys, audit_key))
    }
}

/// `--store-cache`: a byte count of at least 1 MiB, and one this machine can address.
fn parse_store_cache(s: &str) -> Result<u64, String> {
    let bytes = crate::disk::parse_bytes(s)?;
    if bytes < 1 << 20 {
        return Err(format!("{s:?} is below the smallest cache, 1MiB"));
    }
    usize::try_from(bytes)
        .map(|_| bytes)
        .map_err(|_| format!("{s:?} is more than this machine can address"))
}

fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "fluxd".into());
    let suffix: u32 = rand::random();
    format!("{host}-{:06x}", suffix & 0xff_ffff)
}

/// Logs to stderr, filtered by `FLUX_LOG` (default `info`). In the text format every field is
/// written with its control characters escaped ([`crate::logfmt`]): one event, one line.
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FLUX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.fmt_fields(crate::logfmt::EscapedFields).init(),
        LogFormat::Json => b.json().init(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(args: &[&str]) -> Result<NodeConfig> {
        let mut argv = vec!["fluxd"];
        argv.extend_from_slice(args);
        Args::try_parse_from(argv)?.validate()
    }

    #[test]
    fn the_store_cache_is_sized_by_its_flag_and_bounded() {
        assert_eq!(
            config(&[]).unwrap().store_options.redb_cache_bytes,
            Some(256 << 20)
        );
        let c = config(&["--store-cache", "64MiB"]).unwrap();
        assert_eq!(c.store_options.redb_cache_bytes, Some(64 << 20));
        for (bad, says) in [
            ("512KiB", "1MiB"),
            ("0", "1MiB"),
            ("lots", "byte count"),
            ("1PiB", "unit"),
        ] {
            let e = config(&["--store-cache", bad])
                .err()
                .expect(bad)
                .to_string();
            assert!(
                e.contains("--store-cache") && e.contains(says),
                "{bad}: {e}"
            );
        }
    }
}
