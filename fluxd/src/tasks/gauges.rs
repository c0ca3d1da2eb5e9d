//! The cluster gauges (agents by state, queue depth, state targets by status): the leader
//! recomputes them from the store every `--gauges-every` in the background, and `/metrics`
//! only renders what is there, so a scrape never reads the store. Other nodes report them as
//! zero (aggregate with `max()`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use flux_core::leader::job_to_store as to_store;
use flux_core::model::AgentState;
use flux_core::reconcile::TargetState;
use flux_core::store::StoreError;

use crate::state::AppState;

/// Recomputes the cluster gauges every `every` while this node leads, and zeroes them while it
/// does not, until `cancel`.
pub async fn run_gauges(st: Arc<AppState>, every: Duration, cancel: CancellationToken) {
    let mut tick = super::ticker(every);
    while super::ticked(&mut tick, &cancel).await {
        // Every node's own store handle: whether it can commit now.
        st.metrics
            .store_writable
            .set(i64::from(st.store.unwritable().is_none()));
        if st.leader.snapshot().is_leader {
            if let Err(e) = refresh_gauges(&st).await {
                // The gauges keep their last value.
                tracing::warn!(error = %e, "cannot refresh cluster gauges");
            }
        } else {
            clear_gauges(&st);
        }
    }
}

/// How old a sweep's count of a tenant's agents may be and still stand for the store's.
const SWEPT_FRESH: Duration = Duration::from_secs(10);

/// Zeroes the cluster gauges of a node that does not lead.
fn clear_gauges(st: &AppState) {
    st.forget_swept_agents();
    let m = &st.metrics;
    m.queue_depth.set(0);
    m.connected_agents.set(0);
    for s in TargetState::ALL {
        m.state_targets.with_label_values(&[s.as_str()]).set(0);
    }
    for s in [
        AgentState::Online,
        AgentState::Unreachable,
        AgentState::Dead,
    ] {
        m.agents_by_state.with_label_values(&[s.as_str()]).set(0);
    }
    for kind in crate::metrics::OBJECT_KINDS {
        m.store_objects.with_label_values(&[kind]).set(0);
    }
    m.gc_lag.set(0);
}

/// A tenant's `gc/state` record, if it has one that reads.
async fn gc_state(
    st: &AppState,
    tenant: &str,
) -> Result<Option<flux_core::retention::GcState>, StoreError> {
    let k = flux_core::store::Key::new(tenant, flux_core::keys::GC_STATE)?;
    Ok(st
        .store
        .get(&k)
        .await?
        .and_then(|v| serde_json::from_slice(&v.value).ok()))
}

/// Sets the cluster gauges (agents by state, queue depth, state targets) from the store: a
/// scan of every tenant, done by the leader in the background, never per scrape.
pub async fn refresh_gauges(st: &AppState) -> Result<(), StoreError> {
    let mut queued = 0i64;
    let mut objects = [0i64; 3];
    let mut lag = std::time::Duration::ZERO;
    let now = flux_core::model::now_ms();
    let mut by_state = [0i64; 3];
    let mut targets: std::collections::BTreeMap<TargetState, i64> = Default::default();
    for t in &st.jobs.tenants().await.map_err(to_store)? {
        match st.states.counts(t).await {
            Ok(c) => {
                for (s, n) in c {
                    *targets.entry(s).or_default() += n as i64;
                }
            }
            Err(e) => tracing::warn!(tenant = %t, error = %e, "cannot count state targets"),
        }
        // Counted by the leader's last sweep on its view of the fleet (sweeps run every
        // second or so); read from the store when there is no recent one.
        let counts = match st.swept_agents_of(t, SWEPT_FRESH) {
            Some(c) => c,
            None => flux_core::jobs::placement::count_by_state(
                st.jobs
                    .agents(t)
                    .await
                    .map_err(to_store)?
                    .iter()
                    .map(|a| a.state),
            ),
        };
        for (total, n) in by_state.iter_mut().zip(counts) {
            *total += n as i64;
        }
        queued += st.jobs.queue_depth(t).await.map_err(to_store)? as i64;
        // What the collector counted on its last complete sweeps: one small record per tenant.
        if let Some(g) = gc_state(st, t).await? {
            lag = lag.max(flux_core::retention::lag(g.behind_since, now));
            let c = g.counted;
            objects[0] += c.jobs.unwrap_or(0) as i64;
            objects[1] += c.agents.unwrap_or(0) as i64;
            objects[2] += c.idempotency_keys.unwrap_or(0) as i64;
        }
    }
    for (kind, n) in crate::metrics::OBJECT_KINDS.iter().zip(objects) {
        st.metrics.store_objects.with_label_values(&[kind]).set(n);
    }
    st.metrics.queue_depth.set(queued);
    st.metrics.gc_lag.set(lag.as_secs() as i64);
    for s in TargetState::ALL {
        st.metrics
            .state_targets
            .with_label_values(&[s.as_str()])
            .set(targets.get(&s).copied().unwrap_or(0));
    }
    st.metrics.connected_agents.set(by_state[0]);
    for (i, s) in [
        AgentState::Online,
        AgentState::Unreachable,
        AgentState::Dead,
    ]
    .iter()
    .enumerate()
    {
        st.metrics
            .agents_by_state
            .with_label_values(&[s.as_str()])
            .set(by_state[i]);
    }
    Ok(())
}
