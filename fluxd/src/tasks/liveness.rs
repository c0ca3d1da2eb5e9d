//! Publishes what this node heard of the agents that talk to it: one liveness record per tenant
//! per interval (`flux_core::jobs::Jobs::publish_liveness`), which the leader's sweep reads.
//! Heartbeats themselves are not written to the store.

use std::sync::Arc;
use std::time::Duration;

use flux_core::jobs::JobsConfig;
use flux_core::model::now_ms;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Longest between two publications, whatever the heartbeat settings (the lag of `last_seen`
/// on the other nodes). A record holds every agent the node heard from: at 100,000 agents it
/// is about 3 MB, encoded and written each time.
const MAX_PUBLISH_EVERY: Duration = Duration::from_secs(5);
/// Shortest between two publications.
const MIN_PUBLISH_EVERY: Duration = Duration::from_millis(10);

/// How often a node publishes its liveness records: every heartbeat interval, at most a quarter
/// of the unreachable window (so a record's lag stays well inside it) and at most 5 s.
pub fn publish_every(cfg: &JobsConfig) -> Duration {
    cfg.heartbeat_interval
        .min(cfg.unreachable_after / 4)
        .min(MAX_PUBLISH_EVERY)
        .max(MIN_PUBLISH_EVERY)
}

/// Publishes this node's liveness records every `every` until `cancel`.
pub async fn run_liveness(st: Arc<AppState>, every: Duration, cancel: CancellationToken) {
    let mut tick = super::ticker(every);
    while super::ticked(&mut tick, &cancel).await {
        if let Err(e) = st.jobs.publish_liveness(&st.node_id, now_ms()).await {
            tracing::debug!(error = %e, "liveness records not published; retrying");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_published_well_inside_the_unreachable_window() {
        let default = JobsConfig::default();
        assert_eq!(publish_every(&default), Duration::from_millis(1500));
        let slow = JobsConfig {
            heartbeat_interval: Duration::from_secs(30),
            unreachable_after: Duration::from_secs(90),
            ..JobsConfig::default()
        };
        assert_eq!(publish_every(&slow), MAX_PUBLISH_EVERY);
        let fast = JobsConfig {
            heartbeat_interval: Duration::from_millis(250),
            unreachable_after: Duration::from_secs(1),
            ..JobsConfig::default()
        };
        assert_eq!(publish_every(&fast), Duration::from_millis(250));
        let tight = JobsConfig {
            heartbeat_interval: Duration::from_secs(2),
            unreachable_after: Duration::from_millis(400),
            ..JobsConfig::default()
        };
        assert_eq!(publish_every(&tight), Duration::from_millis(100));
        let zero = JobsConfig {
            heartbeat_interval: Duration::ZERO,
            ..JobsConfig::default()
        };
        assert_eq!(publish_every(&zero), MIN_PUBLISH_EVERY);
    }
}
