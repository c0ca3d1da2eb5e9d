//! The leader's periodic audit integrity check: every tenant's hash chain is verified against
//! the last good checkpoint seen of it.

use std::sync::Arc;
use std::time::Duration;

use flux_core::audit::Checkpoint;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// While this node leads, verifies every tenant's chain every `every`; each broken chain found
/// counts in `flux_integrity_mismatch_total` (the `IntegrityMismatch` alert).
pub async fn run_integrity_checks(st: Arc<AppState>, every: Duration, cancel: CancellationToken) {
    // The last good point of each chain: a chain cut back together with its head is caught
    // against it.
    let mut checkpoints: std::collections::HashMap<String, Checkpoint> = Default::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        if !st.leader.snapshot().is_leader {
            continue;
        }
        let tenants = match st.store.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "integrity check: cannot list tenants");
                continue;
            }
        };
        for t in tenants {
            match st.audit.verify(&t, checkpoints.get(&t)).await {
                Ok(v) if v.ok => {
                    if let Some(c) = v.checkpoint {
                        checkpoints.insert(t, c);
                    }
                }
                Ok(v) => {
                    tracing::error!(tenant = %t, problem = ?v.problem, "audit log integrity check failed");
                    st.metrics.integrity_mismatch.inc();
                }
                Err(e) => tracing::warn!(tenant = %t, error = %e, "integrity check could not run"),
            }
        }
        st.metrics.integrity_checks.inc();
    }
}
