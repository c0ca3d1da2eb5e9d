//! The cluster gauges (agents by state, queue depth, state targets by status), refreshed from
//! the store when `/metrics` is scraped.

use flux_core::leader::job_to_store as to_store;
use flux_core::model::AgentState;
use flux_core::reconcile::TargetState;
use flux_core::store::StoreError;

use crate::state::AppState;

/// Sets the cluster gauges (agents by state, queue depth) from the store, so that every node
/// reports the same figures whichever of them a scrape reaches.
pub async fn refresh_gauges(st: &AppState) -> Result<(), StoreError> {
    let mut queued = 0i64;
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
        for a in st.jobs.agents(t).await.map_err(to_store)? {
            by_state[match a.state {
                AgentState::Online => 0,
                AgentState::Unreachable => 1,
                AgentState::Dead => 2,
            }] += 1;
        }
        queued += st.jobs.queue_depth(t).await.map_err(to_store)? as i64;
    }
    st.metrics.queue_depth.set(queued);
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
