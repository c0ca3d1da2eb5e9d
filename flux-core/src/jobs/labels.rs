//! Admin labels: an admin sets and removes labels on an agent's record, apart from the labels
//! the agent declares (which every registration replaces). Selectors see both, the admin label
//! winning on a shared key, so an agent cannot override what an admin said of it.
//!
//! The change is a compare-and-swap of the agent record: a registration, a liveness mark or a
//! facts update made meanwhile is kept (the change is applied again to the newer record).

use super::{CAS_RETRIES, JobError, Jobs, Result, agent_contended, enc, key};
use crate::keys;
use crate::model::{Agent, LabelAgent, valid_ident};
use crate::store::Expect;

impl Jobs {
    /// Applies `change` to the admin labels of agent `node_id` of `tenant`; returns the record.
    /// An unknown agent answers NotFound; a change breaking a bound answers Invalid (naming the
    /// field) and changes nothing.
    pub async fn label_agent(
        &self,
        tenant: &str,
        node_id: &str,
        change: &LabelAgent,
    ) -> Result<Agent> {
        // The request's own bounds first, whatever the agent holds.
        change
            .apply(&mut Default::default())
            .map_err(JobError::Invalid)?;
        if !valid_ident(node_id) {
            return Err(JobError::NotFound(format!("agent {node_id}")));
        }
        let ak = key(tenant, keys::agent(node_id))?;
        for _ in 0..CAS_RETRIES {
            let (mut a, v) = self
                .load_found::<Agent>(&ak, || format!("agent {node_id}"))
                .await?;
            let mut labels = a.admin_labels.clone();
            change.apply(&mut labels).map_err(JobError::Invalid)?;
            if labels == a.admin_labels {
                return Ok(a);
            }
            a.admin_labels = labels;
            let put = self.store.put(ak.clone(), enc(&a), Expect::Version(v));
            if crate::store::landed(put.await)? {
                tracing::info!(tenant, node_id, "admin labels changed");
                return Ok(a);
            }
        }
        Err(agent_contended(node_id))
    }
}
