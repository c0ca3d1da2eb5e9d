//! The leader's periodic audit integrity check: every tenant's hash chain is verified against
//! the checkpoint this node keeps of it (in its data dir, so a chain cut back while the node
//! was down is caught after a restart too).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// While this node leads, verifies every tenant's chain every `every`; each broken chain found
/// counts in `flux_integrity_mismatch_total` (the `IntegrityMismatch` alert).
pub async fn run_integrity_checks(st: Arc<AppState>, every: Duration, cancel: CancellationToken) {
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
        let mut tenants = match st.store.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "integrity check: cannot list tenants");
                continue;
            }
        };
        // A tenant whose every object was removed still has a checkpoint here.
        tenants.extend(st.audit.tracked_tenants());
        tenants.sort();
        tenants.dedup();
        for t in tenants {
            match st.audit.verify_tracked(&t).await {
                Ok(v) if v.ok => {
                    if let Some(note) = v.note {
                        tracing::warn!(tenant = %t, note = %note, "audit log checkpoint superseded by a restore");
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
