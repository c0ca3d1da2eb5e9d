//! Job listing in O(limit): the index entries that follow every job record, the choice of the
//! index a filtered listing reads, opaque cursors, and the migration that indexes jobs stored
//! before the indexes existed.
//!
//! Every job has one empty entry per indexed value (`jobidx/<dim>/<value>/<job_id>`, built in
//! [`crate::keys`]): its status, its kind, its group, and each agent it names (the one it is
//! pinned to and the one holding it). Every write of a job record goes through
//! [`super::put_job`], which adds the changes of [`index_changes`] to the same transaction, so
//! an index never disagrees with a committed record. Job ids are time-ordered (UUIDv7), so an
//! index read in descending order lists newest first.
//!
//! Guarantees:
//! - a page costs at most `limit + 1` index entries and as many job reads when one index
//!   serves the whole filter (or `limit + 1` records when there is no filter);
//! - a combined filter reads the most selective index and checks the rest on each record; it
//!   looks at no more than [`MAX_SCAN`] entries per page, and then returns a short (possibly
//!   empty) page with a cursor to go on, so no request reads the tenant's whole history;
//! - following cursors from the first page returns every job that existed when listing began
//!   and was not deleted meanwhile exactly once, whatever is created or deleted meanwhile (the
//!   cursor is a position in id order, not an offset);
//! - a cursor is only accepted with the filter it was made for; a malformed one, or one made for
//!   another filter, is refused naming `cursor`;
//! - the index entries of a job as it is now are [`index_keys`]: whoever deletes a job record
//!   deletes these with it.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{JobError, Jobs, Result, dec, key};
use crate::keys;
use crate::model::{Job, JobKind, JobStatus};
use crate::store::{Epoch, Expect, Range, StoreError, Txn};

/// Most jobs on one page.
pub const MAX_LIMIT: usize = 1000;
/// Jobs on a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Most index entries (or records) one page looks at before it returns what it found with a
/// cursor to go on: the bound of a combined filter whose second condition rarely holds.
pub const MAX_SCAN: usize = 5000;
/// Jobs indexed per fenced batch of the migration (one batch per tenant per liveness sweep).
pub const BACKFILL_BATCH: usize = 1000;

/// A dimension jobs are indexed by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dim {
    Status,
    Agent,
    Group,
    Kind,
}

impl Dim {
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Status => "status",
            Dim::Agent => "agent",
            Dim::Group => "group",
            Dim::Kind => "kind",
        }
    }
}

/// Filters for listing jobs; every one given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobFilter {
    pub status: Option<JobStatus>,
    /// The agent the job is pinned to or held by.
    pub node_id: Option<String>,
    pub group: Option<String>,
    /// `None`: every kind.
    pub kind: Option<JobKind>,
    /// For [`Jobs::list`] only: stop after this many jobs.
    pub limit: Option<usize>,
}

impl JobFilter {
    /// Whether `job` passes every condition.
    pub fn matches(&self, job: &Job) -> bool {
        self.status.is_none_or(|s| job.status == s)
            && self.kind.is_none_or(|k| job.kind == k)
            && (self.group.is_none() || job.group == self.group)
            && self.node_id.as_ref().is_none_or(|n| {
                job.node_id.as_ref() == Some(n) || job.agent.as_ref() == Some(n)
            })
    }

    /// A digest of the conditions (not the limit), carried in cursors.
    fn digest(&self) -> String {
        let text = format!(
            "status={}\nagent={}\ngroup={}\nkind={}",
            self.status.map_or("", |s| s.as_str()),
            self.node_id.as_deref().unwrap_or(""),
            self.group.as_deref().unwrap_or(""),
            self.kind.map_or("", |k| k.as_str()),
        );
        let d = Sha256::digest(text.as_bytes());
        d[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Every indexed value of a job as it is now: `(dim, value)`.
fn indexed(job: &Job) -> BTreeSet<(Dim, &str)> {
    let mut v = BTreeSet::new();
    v.insert((Dim::Status, job.status.as_str()));
    v.insert((Dim::Kind, job.kind.as_str()));
    if let Some(g) = &job.group {
        v.insert((Dim::Group, g.as_str()));
    }
    for a in [&job.node_id, &job.agent].into_iter().flatten() {
        v.insert((Dim::Agent, a.as_str()));
    }
    v
}

/// Paths of every index entry of `job` as it is now. Deleting a job record deletes these in
/// the same transaction.
pub fn index_keys(job: &Job) -> Vec<String> {
    indexed(job)
        .into_iter()
        .map(|(d, v)| keys::job_index_entry(d.as_str(), v, &job.job_id))
        .collect()
}

/// The index entries to write and to delete when a job record goes from `old` (`None`: it is
/// new) to `new`: `(puts, deletes)`, disjoint.
pub fn index_changes(old: Option<&Job>, new: &Job) -> (Vec<String>, Vec<String>) {
    let now = indexed(new);
    let before = old.map(indexed).unwrap_or_default();
    let path = |(d, v): &(Dim, &str)| keys::job_index_entry(d.as_str(), v, &new.job_id);
    (
        now.difference(&before).map(path).collect(),
        before.difference(&now).map(path).collect(),
    )
}

/// Where a listing reads: the job records themselves, or one index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Records,
    Index(Dim, String),
}

impl Source {
    pub fn prefix(&self) -> String {
        match self {
            Source::Records => keys::JOBS.to_string(),
            Source::Index(d, v) => keys::job_index(d.as_str(), v),
        }
    }

    /// The entry path at which the listing resumes after job `job_id`.
    fn path_of(&self, job_id: &str) -> String {
        format!("{}{job_id}", self.prefix())
    }
}

/// The index that serves `filter`, most selective first: a group (at most one job per agent
/// of a fan-out), an agent, a status of unfinished jobs (what is in flight), a kind other than
/// `user`, a finished status, and the `user` kind last (nearly every job). Without any
/// condition the records are read directly.
pub fn choose_source(filter: &JobFilter) -> Source {
    if let Some(g) = &filter.group {
        return Source::Index(Dim::Group, g.clone());
    }
    if let Some(n) = &filter.node_id {
        return Source::Index(Dim::Agent, n.clone());
    }
    if let Some(s) = filter.status.filter(|s| !s.is_terminal()) {
        return Source::Index(Dim::Status, s.as_str().into());
    }
    if let Some(k) = filter.kind.filter(|k| *k != JobKind::User) {
        return Source::Index(Dim::Kind, k.as_str().into());
    }
    if let Some(s) = filter.status {
        return Source::Index(Dim::Status, s.as_str().into());
    }
    if let Some(k) = filter.kind {
        return Source::Index(Dim::Kind, k.as_str().into());
    }
    Source::Records
}

/// An opaque cursor: the last job id of a page and the digest of the filter it was made for.
pub fn encode_cursor(filter: &JobFilter, last_job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{last_job_id}", filter.digest()))
}

/// The job id a cursor resumes after, if it is well formed and was made for `filter`.
pub fn decode_cursor(filter: &JobFilter, cursor: &str) -> Result<String> {
    let bad = |why: &str| JobError::Invalid(format!("cursor {why}; start again without it"));
    if cursor.len() > 200 {
        return Err(bad("is too long"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| bad("is malformed"))?;
    let (digest, job_id) = raw.split_once(':').ok_or_else(|| bad("is malformed"))?;
    if !job_id.starts_with("j-") || !crate::model::valid_ident(job_id) {
        return Err(bad("is malformed"));
    }
    if digest != filter.digest() {
        return Err(bad("was made for another filter"));
    }
    Ok(job_id.to_string())
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub jobs: Vec<Job>,
    /// Where the next page starts; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// Progress of the index migration in one leader term: tenants known to be indexed, and where
/// each other tenant's migration goes on.
#[derive(Debug, Default)]
pub struct IndexBackfill {
    tenants: HashMap<String, Progress>,
}

#[derive(Debug, Clone)]
enum Progress {
    Done,
    After(Option<String>),
}

impl IndexBackfill {
    /// Whether the tenant's jobs are known to be indexed.
    pub fn is_done(&self, tenant: &str) -> bool {
        matches!(self.tenants.get(tenant), Some(Progress::Done))
    }
}

impl Jobs {
    /// One page of a tenant's jobs matching `filter`, newest first, after `cursor` (from an
    /// earlier page with the same filter). `limit` is 1..=[`MAX_LIMIT`].
    pub async fn list_page(
        &self,
        tenant: &str,
        filter: &JobFilter,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<Page> {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(JobError::Invalid(format!(
                "limit must be between 1 and {MAX_LIMIT}"
            )));
        }
        let after = cursor.map(|c| decode_cursor(filter, c)).transpose()?;
        let source = choose_source(filter);
        let mut range = Range::last(source.prefix(), limit + 1);
        if let Some(id) = &after {
            range = range.after(source.path_of(id));
        }
        let mut jobs = Vec::new();
        let mut scanned = 0usize;
        // The id of the last entry looked at, matching or not.
        let mut last_seen: Option<String> = None;
        loop {
            let entries = self.store.list_range(tenant, &range).await?;
            let exhausted = entries.len() < range.limit;
            // The records behind a page of index entries, read side by side.
            let loaded: Vec<Option<Job>> = match &source {
                Source::Records => entries
                    .iter()
                    .map(|e| dec(&e.key, &e.value).map(Some))
                    .collect::<Result<_>>()?,
                Source::Index(..) => {
                    futures::future::try_join_all(entries.iter().map(|e| async move {
                        match keys::job_index_target(e.key.path()) {
                            Some(id) => Ok(self
                                .load::<Job>(&key(tenant, keys::job(id))?)
                                .await?
                                .map(|(j, _)| j)),
                            None => Ok::<_, JobError>(None),
                        }
                    }))
                    .await?
                }
            };
            for (e, job) in entries.iter().zip(loaded) {
                scanned += 1;
                // A job deleted since its entry was read is passed over.
                let id = match &source {
                    Source::Records => e.key.path().strip_prefix(keys::JOBS),
                    Source::Index(..) => keys::job_index_target(e.key.path()),
                }
                .unwrap_or_default()
                .to_string();
                if let Some(j) = job.filter(|j| filter.matches(j)) {
                    if jobs.len() == limit {
                        // One more match exists: this page is not the last.
                        return Ok(Page {
                            next_cursor: jobs
                                .last()
                                .map(|j: &Job| encode_cursor(filter, &j.job_id)),
                            jobs,
                        });
                    }
                    jobs.push(j);
                }
                last_seen = Some(id);
            }
            if exhausted {
                return Ok(Page {
                    jobs,
                    next_cursor: None,
                });
            }
            if scanned >= MAX_SCAN {
                // Bounded: hand back what was found, and where to go on.
                return Ok(Page {
                    next_cursor: last_seen.map(|id| encode_cursor(filter, &id)),
                    jobs,
                });
            }
            let last = entries.last().expect("a full page has entries");
            range = range.after(last.key.path().to_string());
            range.limit = (limit + 1).min(MAX_SCAN - scanned);
        }
    }

    /// Every job of a tenant matching `filter` (up to `filter.limit`), newest first, page by
    /// page. For callers that know the tenant's history is small (tests, tools).
    pub async fn list(&self, tenant: &str, filter: &JobFilter) -> Result<Vec<Job>> {
        let want = filter.limit.unwrap_or(usize::MAX);
        let mut jobs = Vec::new();
        let mut cursor = None;
        while jobs.len() < want {
            let page = self
                .list_page(
                    tenant,
                    filter,
                    cursor.as_deref(),
                    (want - jobs.len()).min(MAX_LIMIT),
                )
                .await?;
            jobs.extend(page.jobs);
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        Ok(jobs)
    }

    /// One fenced batch of the migration that writes the index entries of jobs stored before
    /// the indexes existed, for `tenant`, resuming where `progress` left it. Once a pass has
    /// reached the tenant's newest job, marks the tenant ([`keys::JOB_INDEX_BUILT`]) so later
    /// terms skip it. Every job is written with a check of the version it was read at, so a
    /// job that changes meanwhile is indexed on a later batch from what it is then; entries of
    /// jobs written since the indexes exist are rewritten unchanged. Returns whether the
    /// tenant is now fully indexed.
    pub async fn backfill_index(
        &self,
        progress: &mut IndexBackfill,
        tenant: &str,
        epoch: Epoch,
        batch: usize,
    ) -> Result<bool> {
        let after = match progress.tenants.get(tenant) {
            Some(Progress::Done) => return Ok(true),
            Some(Progress::After(a)) => a.clone(),
            None => {
                if self
                    .store
                    .get(&key(tenant, keys::JOB_INDEX_BUILT.to_string())?)
                    .await?
                    .is_some()
                {
                    progress.tenants.insert(tenant.to_string(), Progress::Done);
                    return Ok(true);
                }
                None
            }
        };
        let mut range = Range::first(keys::JOBS, batch.max(1));
        if let Some(a) = &after {
            range = range.after(a.clone());
        }
        let entries = self.store.list_range(tenant, &range).await?;
        let exhausted = entries.len() < range.limit;
        let mut txns = Vec::with_capacity(entries.len());
        let mut written = Vec::with_capacity(entries.len());
        for e in &entries {
            let job: Job = match dec(&e.key, &e.value) {
                Ok(j) => j,
                Err(err) => {
                    // Nothing to index it by; the record itself is reported where it is read.
                    tracing::warn!(tenant, error = %err, "job record not indexed");
                    continue;
                }
            };
            let mut txn = Txn::new()
                .fenced(epoch)
                .check(e.key.clone(), Expect::Version(e.version));
            for p in index_keys(&job) {
                txn = txn.put(key(tenant, p)?, Vec::new(), Expect::Any);
            }
            txns.push(txn);
            written.push(e.key.path().to_string());
        }
        // Resume after the last job indexed before the first one that changed meanwhile.
        let mut next = after;
        let mut all = true;
        for (path, r) in written.into_iter().zip(self.store.commit_many(txns).await) {
            match r {
                Ok(_) if all => next = Some(path),
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => all = false,
                Err(err) => return Err(err.into()),
            }
        }
        if all && let Some(last) = entries.last() {
            next = Some(last.key.path().to_string());
        }
        if exhausted && all {
            self.store
                .commit(Txn::new().fenced(epoch).put(
                    key(tenant, keys::JOB_INDEX_BUILT.to_string())?,
                    b"1".to_vec(),
                    Expect::Any,
                ))
                .await?;
            tracing::info!(tenant, "job listing indexes built");
            progress.tenants.insert(tenant.to_string(), Progress::Done);
            return Ok(true);
        }
        progress
            .tenants
            .insert(tenant.to_string(), Progress::After(next));
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CommandSpec;

    fn job(id: &str) -> Job {
        Job {
            job_id: id.into(),
            tenant: "acme".into(),
            command: CommandSpec::Shell("true".into()),
            node_id: None,
            env: Default::default(),
            secret_env: vec![],
            workdir: None,
            timeout_secs: 60,
            max_attempts: 3,
            priority: 0,
            selector: Default::default(),
            group: None,
            kind: JobKind::User,
            status: JobStatus::Queued,
            created_at: 1,
            updated_at: 1,
            started_at: None,
            finished_at: None,
            attempts: 0,
            current_attempt: None,
            agent: None,
            exit_code: None,
            signal: None,
            error: None,
            cancel_requested: false,
            idempotency_key: None,
            submitted_by: "admin".into(),
        }
    }

    #[test]
    fn a_new_job_gets_an_entry_per_indexed_value() {
        let mut j = job("j-1");
        j.group = Some("g-1".into());
        j.node_id = Some("a1".into());
        let (puts, deletes) = index_changes(None, &j);
        assert_eq!(
            puts,
            vec![
                "jobidx/status/queued/j-1",
                "jobidx/agent/a1/j-1",
                "jobidx/group/g-1/j-1",
                "jobidx/kind/user/j-1",
            ]
        );
        assert!(deletes.is_empty());
        assert_eq!(index_keys(&j), puts);
    }

    #[test]
    fn each_transition_moves_only_what_changed() {
        let queued = job("j-1");
        let mut assigned = queued.clone();
        assigned.status = JobStatus::Assigned;
        assigned.agent = Some("a2".into());
        let (puts, deletes) = index_changes(Some(&queued), &assigned);
        assert_eq!(
            puts,
            vec!["jobidx/status/assigned/j-1", "jobidx/agent/a2/j-1"]
        );
        assert_eq!(deletes, vec!["jobidx/status/queued/j-1"]);

        let mut running = assigned.clone();
        running.status = JobStatus::Running;
        assert_eq!(
            index_changes(Some(&assigned), &running),
            (
                vec!["jobidx/status/running/j-1".to_string()],
                vec!["jobidx/status/assigned/j-1".to_string()]
            )
        );
        // Requeued after its agent died: back in the queue, no longer held by a2.
        let mut requeued = running.clone();
        requeued.status = JobStatus::Queued;
        requeued.agent = None;
        let (puts, deletes) = index_changes(Some(&running), &requeued);
        assert_eq!(puts, vec!["jobidx/status/queued/j-1"]);
        assert_eq!(
            deletes,
            vec!["jobidx/status/running/j-1", "jobidx/agent/a2/j-1"]
        );
        // A rewrite that changes no indexed value touches no entry.
        let mut touched = requeued.clone();
        touched.updated_at = 99;
        assert_eq!(index_changes(Some(&requeued), &touched), (vec![], vec![]));
        // A pinned job held by its own agent has one agent entry.
        let mut pinned = job("j-2");
        pinned.node_id = Some("a1".into());
        pinned.agent = Some("a1".into());
        assert_eq!(
            index_keys(&pinned)
                .iter()
                .filter(|p| p.starts_with("jobidx/agent/"))
                .count(),
            1
        );
    }

    #[test]
    fn the_most_selective_index_serves_a_filter() {
        let f = |status, node: Option<&str>, group: Option<&str>, kind| JobFilter {
            status,
            node_id: node.map(Into::into),
            group: group.map(Into::into),
            kind,
            limit: None,
        };
        assert_eq!(choose_source(&f(None, None, None, None)), Source::Records);
        assert_eq!(
            choose_source(&f(
                Some(JobStatus::Running),
                Some("a1"),
                Some("g-1"),
                Some(JobKind::User)
            )),
            Source::Index(Dim::Group, "g-1".into())
        );
        assert_eq!(
            choose_source(&f(Some(JobStatus::Running), Some("a1"), None, None)),
            Source::Index(Dim::Agent, "a1".into())
        );
        assert_eq!(
            choose_source(&f(Some(JobStatus::Running), None, None, Some(JobKind::User))),
            Source::Index(Dim::Status, "running".into())
        );
        assert_eq!(
            choose_source(&f(
                Some(JobStatus::Succeeded),
                None,
                None,
                Some(JobKind::Reconciler)
            )),
            Source::Index(Dim::Kind, "reconciler".into())
        );
        assert_eq!(
            choose_source(&f(Some(JobStatus::Succeeded), None, None, Some(JobKind::User))),
            Source::Index(Dim::Status, "succeeded".into())
        );
        assert_eq!(
            choose_source(&f(None, None, None, Some(JobKind::User))),
            Source::Index(Dim::Kind, "user".into())
        );
    }

    #[test]
    fn filters_check_every_condition() {
        let mut j = job("j-1");
        j.node_id = Some("a1".into());
        j.status = JobStatus::Running;
        let pass = |f: JobFilter| f.matches(&j);
        assert!(pass(JobFilter::default()));
        assert!(pass(JobFilter {
            node_id: Some("a1".into()),
            status: Some(JobStatus::Running),
            kind: Some(JobKind::User),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            kind: Some(JobKind::Reconciler),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            group: Some("g".into()),
            ..Default::default()
        }));
        assert!(!pass(JobFilter {
            node_id: Some("a2".into()),
            ..Default::default()
        }));
    }

    #[test]
    fn cursors_round_trip_only_with_their_filter() {
        let running = JobFilter {
            status: Some(JobStatus::Running),
            ..Default::default()
        };
        let c = encode_cursor(&running, "j-0190abc");
        assert_eq!(decode_cursor(&running, &c).unwrap(), "j-0190abc");
        // The limit is not part of the filter.
        let with_limit = JobFilter {
            limit: Some(5),
            ..running.clone()
        };
        assert!(decode_cursor(&with_limit, &c).is_ok());
        let other = JobFilter::default();
        let e = decode_cursor(&other, &c).unwrap_err().to_string();
        assert!(e.contains("cursor") && e.contains("another filter"), "{e}");
        for bad in [
            "",
            "!!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode(format!("{}:x/../y", running.digest())),
            &"A".repeat(300),
        ] {
            let e = decode_cursor(&running, bad).unwrap_err().to_string();
            assert!(e.starts_with("cursor "), "{bad}: {e}");
        }
    }
}
