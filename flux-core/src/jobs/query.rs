//! Reads: jobs (one, or a filtered list), attempts, stored output, agents, tenants and queue
//! depth. None of these write.

use super::{JobError, Jobs, Result, key};
use crate::keys;
use crate::model::{Agent, Attempt, Job, JobStatus, StoredChunk, valid_ident};

/// Filters for listing jobs.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    pub node_id: Option<String>,
    pub group: Option<String>,
    pub limit: Option<usize>,
}

impl Jobs {
    pub async fn get(&self, tenant: &str, job_id: &str) -> Result<Job> {
        if !valid_ident(job_id) {
            return Err(JobError::NotFound(format!("job {job_id}")));
        }
        self.load(&key(tenant, keys::job(job_id))?)
            .await?
            .map(|(j, _)| j)
            .ok_or_else(|| JobError::NotFound(format!("job {job_id}")))
    }

    /// Lists a tenant's jobs, newest first.
    pub async fn list(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let mut jobs: Vec<Job> =
            self.list_objects::<Job>(tenant, keys::JOBS)
                .await?
                .into_iter()
                .map(|(j, _)| j)
                .filter(|j| filter.status.is_none_or(|s| j.status == s))
                .filter(|j| filter.group.is_none() || j.group == filter.group)
                .filter(|j| {
                    filter.node_id.as_ref().is_none_or(|n| {
                        j.node_id.as_ref() == Some(n) || j.agent.as_ref() == Some(n)
                    })
                })
                .collect();
        jobs.reverse();
        if let Some(l) = filter.limit {
            jobs.truncate(l);
        }
        Ok(jobs)
    }

    pub async fn attempts(&self, tenant: &str, job_id: &str) -> Result<Vec<Attempt>> {
        self.get(tenant, job_id).await?;
        Ok(self
            .list_objects::<Attempt>(tenant, &keys::attempts(job_id))
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    /// Stored output of an attempt from chunk `from_seq` on.
    pub async fn output(
        &self,
        tenant: &str,
        attempt_id: &str,
        from_seq: u64,
    ) -> Result<Vec<StoredChunk>> {
        Ok(self
            .list_objects::<StoredChunk>(tenant, &keys::output(attempt_id))
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .filter(|c| c.seq >= from_seq)
            .collect())
    }

    pub async fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        Ok(self
            .list_objects::<Agent>(tenant, keys::AGENTS)
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    pub async fn agent(&self, tenant: &str, node_id: &str) -> Result<Agent> {
        if !valid_ident(node_id) {
            return Err(JobError::NotFound(format!("agent {node_id}")));
        }
        self.load::<Agent>(&key(tenant, keys::agent(node_id))?)
            .await?
            .map(|(a, _)| a)
            .ok_or_else(|| JobError::NotFound(format!("agent {node_id}")))
    }

    /// Every tenant with objects (the leader schedules and sweeps each).
    pub async fn tenants(&self) -> Result<Vec<String>> {
        Ok(self
            .store
            .tenants()
            .await?
            .into_iter()
            .filter(|t| !t.starts_with('_'))
            .collect())
    }

    /// Number of queued jobs of a tenant.
    pub async fn queue_depth(&self, tenant: &str) -> Result<usize> {
        Ok(self.store.list(tenant, keys::PENDING).await?.len())
    }
}
