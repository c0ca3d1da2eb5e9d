//! `fluxd` arguments that make leases and agent liveness fast, shared by the chaos cluster and
//! the high-availability tests so that both see failovers of about a second.

/// `fluxd` arguments for short leases (TTL 1.2 s, renewal 300 ms, retry 100 ms), so a failover
/// takes about a second: the chaos cluster's, and the high-availability tests'.
pub const FAST_LEASE_ARGS: [&str; 6] = [
    "--lease-ttl",
    "1200ms",
    "--lease-renew",
    "300ms",
    "--lease-retry",
    "100ms",
];

/// `fluxd` arguments for fast agent liveness: heartbeats every 250 ms, unreachable after 1 s,
/// dead after 2 s, swept every 200 ms.
pub const FAST_LIVENESS_ARGS: [&str; 8] = [
    "--heartbeat-interval",
    "250ms",
    "--unreachable-after",
    "1s",
    "--dead-after",
    "2s",
    "--sweep-interval",
    "200ms",
];
