//! Admin labels: an admin sets and removes labels on an agent's record, apart from the labels
//! the agent declares (which every registration replaces). Selectors see both, the admin label
//! winning on a shared key, so an agent cannot override what an admin said of it.
//!
//! The change is a compare-and-swap of the agent record: a registration, a liveness mark or a
//! facts update made meanwhile is kept (the change is applied again to the newer record).

use super::{JobError, Jobs, Result};
use crate::model::{Agent, LabelAgent};

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
        let (agent, wrote) = self
            .rewrite_agent(tenant, node_id, |a| {
                let mut labels = a.admin_labels.clone();
                change.apply(&mut labels).map_err(JobError::Invalid)?;
                Ok((labels != a.admin_labels).then(|| Agent {
                    admin_labels: labels,
                    ..a.clone()
                }))
            })
            .await?;
        if wrote {
            tracing::info!(tenant, node_id, "admin labels changed");
        }
        Ok(agent)
    }
}
