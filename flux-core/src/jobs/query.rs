//! Reads: jobs (one; listings are `listing`), attempts, stored output, agents, tenants and queue
//! depth. None of these write.

use super::{JobError, Jobs, Result, dec};
use crate::keys;
use crate::model::{Agent, Attempt, Job, StoredChunk, valid_ident};
use crate::quota::Quota;
use crate::store::{Key, Range};

impl Jobs {
    pub async fn get(&self, tenant: &str, job_id: &str) -> Result<Job> {
        if !valid_ident(job_id) {
            return Err(JobError::NotFound(format!("job {job_id}")));
        }
        let (job, _) = self
            .load_found(&Key::new(tenant, keys::job(job_id))?, || {
                format!("job {job_id}")
            })
            .await?;
        Ok(job)
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

    /// Stored output of an attempt from chunk `from_seq` on. Reads only those chunks (a range
    /// read after chunk `from_seq - 1`), so a follower that asks for what is new each time it
    /// wakes reads each chunk once.
    pub async fn output(
        &self,
        tenant: &str,
        attempt_id: &str,
        from_seq: u64,
    ) -> Result<Vec<StoredChunk>> {
        const PAGE: usize = 1000;
        let mut range = Range::first(keys::output(attempt_id), PAGE);
        if let Some(prev) = from_seq.checked_sub(1) {
            range = range.after(keys::output_chunk(attempt_id, prev));
        }
        let mut chunks = Vec::new();
        loop {
            let entries = self.store.list_range(tenant, &range).await?;
            for e in &entries {
                let c: StoredChunk = dec(&e.key, &e.value)?;
                if c.seq >= from_seq {
                    chunks.push(c);
                }
            }
            match entries.last() {
                Some(last) if entries.len() == PAGE => {
                    range = range.after(last.key.path().to_string())
                }
                _ => return Ok(chunks),
            }
        }
    }

    pub async fn agents(&self, tenant: &str) -> Result<Vec<Agent>> {
        Ok(self
            .list_objects::<Agent>(tenant, keys::AGENTS)
            .await?
            .into_iter()
            .map(|(a, _)| a)
            .collect())
    }

    /// Whether any agent of the tenant satisfies `pred`, reading the agents page by page and
    /// stopping at the first that does (the whole set is read only when none does).
    pub async fn any_agent(&self, tenant: &str, pred: impl Fn(&Agent) -> bool) -> Result<bool> {
        const PAGE: usize = 256;
        let mut range = Range::first(keys::AGENTS, PAGE);
        loop {
            let page = self.store.list_range(tenant, &range).await?;
            for e in &page {
                if pred(&dec::<Agent>(&e.key, &e.value)?) {
                    return Ok(true);
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE => range = range.after(last.key.path()),
                _ => return Ok(false),
            }
        }
    }

    pub async fn agent(&self, tenant: &str, node_id: &str) -> Result<Agent> {
        if !valid_ident(node_id) {
            return Err(JobError::NotFound(format!("agent {node_id}")));
        }
        let (agent, _) = self
            .load_found::<Agent>(&Key::new(tenant, keys::agent(node_id))?, || {
                format!("agent {node_id}")
            })
            .await?;
        Ok(agent)
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

    /// The tenant's queue depth where its quota limits the queue (0, not read, where it does
    /// not): what admission of new jobs compares with `max_queued`.
    pub(crate) async fn queued_under(&self, tenant: &str, quota: &Quota) -> Result<u64> {
        Ok(match quota.max_queued {
            Some(_) => self.queue_depth(tenant).await? as u64,
            None => 0,
        })
    }
}
