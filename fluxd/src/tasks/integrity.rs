//! The leader's periodic audit work: every tenant's hash chain is verified from the checkpoint
//! this node keeps of it (in its data dir, so a chain cut back while the node was down is
//! caught after a restart too), reading only the records added since, and a slice of the
//! older records is scrubbed (verified again), round after round, so an edit behind the
//! checkpoint is found too at a bounded cost per check; then, with `--audit-retention`, the
//! records that were exported and are older than the retention are pruned in fenced batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use flux_core::audit::Walk;
use flux_core::model::now_ms;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

/// Older records scrubbed per tenant per check.
const SCRUB_SLICE: u64 = 10_000;
/// Records removed per pruning transaction.
const PRUNE_BATCH: usize = 1000;
/// Pruning transactions per tenant per check, so one tenant's backlog cannot hold up the rest.
const PRUNE_BATCHES_PER_CHECK: usize = 20;

/// While this node leads, verifies every tenant's chain every `every`; each broken chain found
/// counts in `flux_integrity_mismatch_total` (the `IntegrityMismatch` alert). A chain that
/// verified is then pruned of exported records older than `retention`.
pub async fn run_integrity_checks(
    st: Arc<AppState>,
    every: Duration,
    retention: Option<Duration>,
    cancel: CancellationToken,
) {
    // Where each tenant's next scrub slice starts (this node's, from the base at first).
    let mut scrub_at: HashMap<String, u64> = HashMap::new();
    let mut tick = super::ticker(every);
    while super::ticked(&mut tick, &cancel).await {
        let leader = st.leader.snapshot();
        if !leader.is_leader {
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
            let mut checked = st.audit.verify_tracked(&t, Walk::FromCheckpoint).await;
            if let Ok(v) = &checked
                && v.ok
                && let Some(upto) = &v.checkpoint
            {
                let from = scrub_at.get(&t).copied().unwrap_or(0);
                match st.audit.scrub(&t, from, upto, SCRUB_SLICE).await {
                    Ok((next, None)) => {
                        scrub_at.insert(t.clone(), next);
                    }
                    // A suspected break is confirmed by a full walk (a prune or restore
                    // meanwhile can make a slice look broken).
                    Ok((next, Some(_))) => {
                        scrub_at.insert(t.clone(), next);
                        checked = st.audit.verify_tracked(&t, Walk::Full).await;
                    }
                    Err(e) => tracing::warn!(tenant = %t, error = %e, "audit scrub could not run"),
                }
            }
            match checked {
                Ok(v) if v.ok => {
                    if let Some(note) = v.note {
                        tracing::warn!(tenant = %t, note = %note, "audit log checkpoint superseded by a restore");
                    }
                    if let Some(keep) = retention {
                        prune(&st, &t, keep, leader.epoch).await;
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

/// Prunes the tenant's exported records older than `keep`, in batches fenced by `epoch`.
async fn prune(st: &AppState, tenant: &str, keep: Duration, epoch: u64) {
    let cutoff = now_ms().saturating_sub(keep.as_millis() as u64);
    for _ in 0..PRUNE_BATCHES_PER_CHECK {
        match st.audit.prune(tenant, cutoff, epoch, PRUNE_BATCH).await {
            Ok(0) => return,
            Ok(n) => {
                st.metrics.audit_pruned.inc_by(n);
                tracing::info!(tenant, records = n, "exported audit records pruned");
            }
            Err(e) => {
                tracing::warn!(tenant, error = %e, "audit pruning stopped");
                return;
            }
        }
    }
}
