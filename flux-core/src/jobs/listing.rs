//! Job listing in O(limit): the index entries that follow every job record, the choice of the
//! index a filtered listing reads, opaque cursors, and the migration that indexes jobs stored
//! before the indexes existed.
//!
//! Every job has one empty entry per indexed value (`jobidx/<dim>/<value>/<kind>/<job_id>` and
//! `jobidx/kind/<kind>/<job_id>`, built in [`crate::keys`]): its status, its group, each agent
//! it names (the one it is pinned to and the one holding it), and its kind. Every write of a
//! job record goes through `put_job` (in `jobs/mod.rs`), which adds the changes of
//! [`index_changes`] to the same transaction, so an index never disagrees with a committed
//! record. Job ids are time-ordered (UUIDv7), so an
//! index read in descending order lists newest first.
//!
//! Guarantees:
//! - every index is split by kind, so a filter of one condition (status, agent or group) and
//!   a kind reads one index that holds exactly its jobs: `limit + 1` entries and as many job
//!   records. Without a kind the indexes of every kind are merged in id order (`limit + 1`
//!   entries of each); without any condition the records are read directly (`limit + 1`);
//! - a filter of several conditions reads the most selective index (group, then agent, then
//!   status) and checks the rest on each record; it looks at no more than [`MAX_SCAN`] entries
//!   per page, and then returns a short (possibly empty) page with a cursor to go on, so no
//!   request reads the tenant's whole history;
//! - following cursors from the first page returns every job that existed when listing began
//!   and was not deleted meanwhile exactly once, whatever is created or deleted meanwhile (the
//!   cursor is a position in id order, not an offset);
//! - a cursor is only accepted with the tenant and filter it was made for; a malformed one, or
//!   one made for another filter or tenant, is refused naming `cursor`;
//! - the index entries of a job as it is now are [`index_keys`]: whoever deletes a job record
//!   deletes these with it.

use std::collections::{BTreeSet, HashMap};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use super::{JobError, Jobs, Result, dec};
use crate::keys;
use crate::model::{Job, JobKind, JobStatus};
use crate::named::named_enum;
use crate::store::{Epoch, Expect, Key, Range, StoreError, Txn};

/// Most jobs on one page.
pub const MAX_LIMIT: usize = 1000;
/// Jobs on a page when the caller does not say.
pub const DEFAULT_LIMIT: usize = 100;
/// Most index entries (or records) one page looks at before it returns what it found with a
/// cursor to go on: the bound of a combined filter whose second condition rarely holds.
pub const MAX_SCAN: usize = 5000;
/// Jobs indexed per fenced batch of the migration (one batch per tenant per liveness sweep).
pub const BACKFILL_BATCH: usize = 1000;

named_enum! {
    /// A dimension jobs are indexed by (besides their kind, which splits every index).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
    #[strum(serialize_all = "snake_case")]
    pub enum Dim {
        Status,
        Agent,
        Group,
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
            && self
                .node_id
                .as_ref()
                .is_none_or(|n| job.node_id.as_ref() == Some(n) || job.agent.as_ref() == Some(n))
    }

    /// A digest of the tenant and the conditions (not the limit), carried in cursors.
    fn digest(&self, tenant: &str) -> String {
        let text = format!(
            "tenant={tenant}\nstatus={}\nagent={}\ngroup={}\nkind={}",
            self.status.map_or("", |s| s.as_str()),
            self.node_id.as_deref().unwrap_or(""),
            self.group.as_deref().unwrap_or(""),
            self.kind.map_or("", |k| k.as_str()),
        );
        let d = Sha256::digest(text.as_bytes());
        d[..6].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Every index `job` belongs to as it is now (their prefixes).
fn indexes_of(job: &Job) -> BTreeSet<String> {
    let kind = job.kind.as_str();
    let mut v = BTreeSet::new();
    v.insert(keys::job_kind_index(kind));
    v.insert(keys::job_index(
        Dim::Status.as_str(),
        job.status.as_str(),
        kind,
    ));
    if let Some(g) = &job.group {
        v.insert(keys::job_index(Dim::Group.as_str(), g, kind));
    }
    for a in [&job.node_id, &job.agent].into_iter().flatten() {
        v.insert(keys::job_index(Dim::Agent.as_str(), a, kind));
    }
    v
}

/// Paths of every index entry of `job` as it is now. Deleting a job record deletes these in
/// the same transaction.
pub fn index_keys(job: &Job) -> Vec<String> {
    indexes_of(job)
        .iter()
        .map(|ix| keys::job_index_entry(ix, &job.job_id))
        .collect()
}

/// The index entries to write and to delete when a job record goes from `old` (`None`: it is
/// new) to `new`: `(puts, deletes)`, disjoint.
pub fn index_changes(old: Option<&Job>, new: &Job) -> (Vec<String>, Vec<String>) {
    let now = indexes_of(new);
    let before = old.map(indexes_of).unwrap_or_default();
    let path = |ix: &String| keys::job_index_entry(ix, &new.job_id);
    (
        now.difference(&before).map(path).collect(),
        before.difference(&now).map(path).collect(),
    )
}

/// Where a listing reads: the job records themselves, or the indexes whose entries, merged in
/// id order, are the candidates (one per kind when the filter does not name one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Records,
    Index(Vec<String>),
}

/// The index that serves `filter`, most selective first: a group (at most one job per agent
/// of a fan-out), an agent, a status of unfinished jobs (what is in flight), a finished
/// status; each of them split by kind. With only a kind, that kind's index; without any
/// condition the records are read directly.
pub fn choose_source(filter: &JobFilter) -> Source {
    let dim = if let Some(g) = &filter.group {
        Some((Dim::Group, g.clone()))
    } else if let Some(n) = &filter.node_id {
        Some((Dim::Agent, n.clone()))
    } else {
        filter.status.map(|s| (Dim::Status, s.as_str().to_string()))
    };
    let kinds: Vec<JobKind> = match filter.kind {
        Some(k) => vec![k],
        None => JobKind::ALL.to_vec(),
    };
    match (dim, filter.kind) {
        (None, None) => Source::Records,
        (None, Some(k)) => Source::Index(vec![keys::job_kind_index(k.as_str())]),
        (Some((d, v)), _) => Source::Index(
            kinds
                .iter()
                .map(|k| keys::job_index(d.as_str(), &v, k.as_str()))
                .collect(),
        ),
    }
}

/// Descending reads of several prefixes merged by the id their entries end in.
struct Merged<'a> {
    store: &'a crate::store::DynStore,
    tenant: &'a str,
    page: usize,
    streams: Vec<Stream>,
}

struct Stream {
    range: Range,
    buf: std::collections::VecDeque<crate::store::Entry>,
    done: bool,
}

impl Merged<'_> {
    /// The job id an entry of this source ends in.
    fn id_of(path: &str) -> &str {
        path.rsplit('/').next().unwrap_or_default()
    }

    /// The next entry (greatest job id first) and its job id, or `None` at the end.
    async fn next(&mut self) -> Result<Option<(String, crate::store::Entry)>> {
        for s in &mut self.streams {
            if s.buf.is_empty() && !s.done {
                s.range.limit = self.page;
                let got = self.store.list_range(self.tenant, &s.range).await?;
                s.done = got.len() < self.page;
                if let Some(last) = got.last() {
                    s.range.start_after = Some(last.key.path().to_string());
                }
                s.buf.extend(got);
            }
        }
        let best = self
            .streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.buf.front().map(|e| (i, Self::id_of(e.key.path()))))
            .max_by(|a, b| a.1.cmp(b.1))
            .map(|(i, _)| i);
        Ok(best.and_then(|i| self.streams[i].buf.pop_front()).map(|e| {
            let id = Self::id_of(e.key.path()).to_string();
            (id, e)
        }))
    }
}

/// An opaque cursor: the last job id of a page and the digest of the tenant and filter it was
/// made for.
pub fn encode_cursor(tenant: &str, filter: &JobFilter, last_job_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{last_job_id}", filter.digest(tenant)))
}

/// The job id a cursor resumes after, if it is well formed and was made for `filter` in
/// `tenant`.
pub fn decode_cursor(tenant: &str, filter: &JobFilter, cursor: &str) -> Result<String> {
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
    if digest != filter.digest(tenant) {
        return Err(bad("was made for another filter or tenant"));
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
        let after = cursor
            .map(|c| decode_cursor(tenant, filter, c))
            .transpose()?;
        let source = choose_source(filter);
        let prefixes = match &source {
            Source::Records => vec![keys::JOBS.to_string()],
            Source::Index(p) => p.clone(),
        };
        let mut scan = Merged {
            store: &self.store,
            tenant,
            page: limit + 1,
            streams: prefixes
                .into_iter()
                .map(|p| {
                    let mut range = Range::last(p.clone(), limit + 1);
                    if let Some(id) = &after {
                        range = range.after(format!("{p}{id}"));
                    }
                    Stream {
                        range,
                        buf: Default::default(),
                        done: false,
                    }
                })
                .collect(),
        };
        let mut jobs = Vec::new();
        let mut scanned = 0usize;
        loop {
            // The next candidates: as many as could still fill the page (and one more).
            let want = (limit + 1 - jobs.len()).min(MAX_SCAN - scanned);
            let mut batch = Vec::with_capacity(want);
            while batch.len() < want {
                match scan.next().await? {
                    Some(c) => batch.push(c),
                    None => break,
                }
            }
            let exhausted = batch.len() < want;
            // The records behind index entries, read side by side.
            let loaded: Vec<Option<Job>> = match &source {
                Source::Records => batch
                    .iter()
                    .map(|(_, e)| dec(&e.key, &e.value).map(Some))
                    .collect::<Result<_>>()?,
                Source::Index(..) => {
                    futures::future::try_join_all(batch.iter().map(|(id, _)| async move {
                        Ok::<_, JobError>(
                            self.load::<Job>(&Key::new(tenant, keys::job(id))?)
                                .await?
                                .map(|(j, _)| j),
                        )
                    }))
                    .await?
                }
            };
            let mut last_seen = None;
            for ((id, _), job) in batch.into_iter().zip(loaded) {
                scanned += 1;
                // A job deleted since its entry was read is passed over.
                if let Some(j) = job.filter(|j| filter.matches(j)) {
                    if jobs.len() == limit {
                        // One more match exists: this page is not the last.
                        return Ok(Page {
                            next_cursor: jobs
                                .last()
                                .map(|j: &Job| encode_cursor(tenant, filter, &j.job_id)),
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
                    next_cursor: last_seen.map(|id| encode_cursor(tenant, filter, &id)),
                    jobs,
                });
            }
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
    /// job that changes meanwhile is indexed on a later batch from what it is then; jobs that
    /// already have their kind's entry (every job written since the indexes exist) are not
    /// written at all. Returns whether the tenant is now fully indexed.
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
                    .get(&Key::new(tenant, keys::JOB_INDEX_BUILT.to_string())?)
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
        let mut decoded = Vec::with_capacity(entries.len());
        for e in &entries {
            match dec::<Job>(&e.key, &e.value) {
                Ok(j) => decoded.push((e, j)),
                // Nothing to index it by; the record itself is reported where it is read.
                Err(err) => tracing::warn!(tenant, error = %err, "job record not indexed"),
            }
        }
        // A job written since the indexes exist has every entry, its kind's among them: only
        // jobs without that one are written, so a store that needs nothing gets no write.
        let indexed = futures::future::try_join_all(decoded.iter().map(|(_, j)| async move {
            let k = Key::new(
                tenant,
                keys::job_index_entry(&keys::job_kind_index(j.kind.as_str()), &j.job_id),
            )?;
            Ok::<_, JobError>(self.store.get(&k).await?.is_some())
        }))
        .await?;
        let mut txns = Vec::new();
        let mut written = Vec::new();
        for ((e, job), done) in decoded.into_iter().zip(indexed) {
            if done {
                continue;
            }
            let mut txn = Txn::new()
                .fenced(epoch)
                .check(e.key.clone(), Expect::Version(e.version));
            for p in index_keys(&job) {
                txn = txn.put(Key::new(tenant, p)?, Vec::new(), Expect::Any);
            }
            txns.push(txn);
            written.push(e.key.path().to_string());
        }
        // Resume before the first job that changed meanwhile (it is looked at again), or
        // after the batch.
        let mut next = entries
            .last()
            .map(|e| e.key.path().to_string())
            .or(after.clone());
        let mut all = true;
        let results = if txns.is_empty() {
            Vec::new()
        } else {
            self.store.commit_many(txns).await
        };
        for (path, r) in written.into_iter().zip(results) {
            match r {
                Ok(_) => {}
                Err(StoreError::Conflict { .. }) => {
                    if all {
                        next = before(&entries, &path).or(after.clone());
                    }
                    all = false;
                }
                Err(err) => return Err(err.into()),
            }
        }
        if exhausted && all {
            self.store
                .commit(Txn::new().fenced(epoch).put(
                    Key::new(tenant, keys::JOB_INDEX_BUILT.to_string())?,
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

/// The path of the entry before `path` among `entries` (`None` for the first).
fn before(entries: &[crate::store::Entry], path: &str) -> Option<String> {
    let i = entries.iter().position(|e| e.key.path() == path)?;
    i.checked_sub(1).map(|j| entries[j].key.path().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CommandSpec;

    fn job(id: &str) -> Job {
        let command = CommandSpec::Shell("true".into());
        Job::queued(id.into(), "acme", command, 60, 3, "admin", 1)
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
                "jobidx/agent/a1/user/j-1",
                "jobidx/group/g-1/user/j-1",
                "jobidx/kind/user/j-1",
                "jobidx/status/queued/user/j-1",
            ]
        );
        assert!(deletes.is_empty());
        assert_eq!(index_keys(&j), puts);
        j.kind = JobKind::Reconciler;
        assert!(index_keys(&j).contains(&"jobidx/status/queued/reconciler/j-1".to_string()));
        assert!(index_keys(&j).contains(&"jobidx/kind/reconciler/j-1".to_string()));
    }

    /// Job waits are woken by this entry alone (fluxd's `waiters`), so every way a job can
    /// end, from every status it can end from, must write it.
    #[test]
    fn a_jobs_end_puts_its_entry_in_the_finished_status_index() {
        let (finished, unfinished): (Vec<_>, Vec<_>) =
            JobStatus::ALL.into_iter().partition(|s| s.is_terminal());
        for kind in JobKind::ALL {
            for &from in &unfinished {
                for &to in &finished {
                    let mut old = job("j-1");
                    old.kind = kind;
                    old.status = from;
                    let mut new = old.clone();
                    new.status = to;
                    let (puts, _) = index_changes(Some(&old), &new);
                    let ended: Vec<_> = puts
                        .iter()
                        .filter_map(|p| keys::job_status_entry(p))
                        .collect();
                    assert_eq!(
                        ended,
                        vec![(to.as_str(), "j-1")],
                        "{kind:?} {from:?} -> {to:?}"
                    );
                }
            }
            // No job is stored finished at once today; one that were would write it too.
            let mut new = job("j-2");
            new.kind = kind;
            new.status = JobStatus::Cancelled;
            let (puts, _) = index_changes(None, &new);
            assert!(
                puts.iter()
                    .any(|p| keys::job_status_entry(p) == Some(("cancelled", "j-2")))
            );
        }
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
            vec![
                "jobidx/agent/a2/user/j-1",
                "jobidx/status/assigned/user/j-1"
            ]
        );
        assert_eq!(deletes, vec!["jobidx/status/queued/user/j-1"]);

        let mut running = assigned.clone();
        running.status = JobStatus::Running;
        assert_eq!(
            index_changes(Some(&assigned), &running),
            (
                vec!["jobidx/status/running/user/j-1".to_string()],
                vec!["jobidx/status/assigned/user/j-1".to_string()]
            )
        );
        // Requeued after its agent died: back in the queue, no longer held by a2.
        let mut requeued = running.clone();
        requeued.status = JobStatus::Queued;
        requeued.agent = None;
        let (puts, deletes) = index_changes(Some(&running), &requeued);
        assert_eq!(puts, vec!["jobidx/status/queued/user/j-1"]);
        assert_eq!(
            deletes,
            vec!["jobidx/agent/a2/user/j-1", "jobidx/status/running/user/j-1"]
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
        let ix = |v: &[&str]| Source::Index(v.iter().map(|s| s.to_string()).collect());
        assert_eq!(choose_source(&f(None, None, None, None)), Source::Records);
        assert_eq!(
            choose_source(&f(
                Some(JobStatus::Running),
                Some("a1"),
                Some("g-1"),
                Some(JobKind::User)
            )),
            ix(&["jobidx/group/g-1/user/"])
        );
        assert_eq!(
            choose_source(&f(Some(JobStatus::Running), Some("a1"), None, None)),
            ix(&[
                "jobidx/agent/a1/user/",
                "jobidx/agent/a1/reconciler/",
                "jobidx/agent/a1/rollout/",
                "jobidx/agent/a1/schedule/"
            ])
        );
        assert_eq!(
            choose_source(&f(
                Some(JobStatus::Running),
                None,
                None,
                Some(JobKind::User)
            )),
            ix(&["jobidx/status/running/user/"])
        );
        assert_eq!(
            choose_source(&f(Some(JobStatus::Succeeded), None, None, None)),
            ix(&[
                "jobidx/status/succeeded/user/",
                "jobidx/status/succeeded/reconciler/",
                "jobidx/status/succeeded/rollout/",
                "jobidx/status/succeeded/schedule/"
            ])
        );
        assert_eq!(
            choose_source(&f(None, None, None, Some(JobKind::Reconciler))),
            ix(&["jobidx/kind/reconciler/"])
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
        let c = encode_cursor("acme", &running, "j-0190abc");
        assert_eq!(decode_cursor("acme", &running, &c).unwrap(), "j-0190abc");
        let e = decode_cursor("globex", &running, &c)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cursor") && e.contains("tenant"), "{e}");
        // The limit is not part of the filter.
        let with_limit = JobFilter {
            limit: Some(5),
            ..running.clone()
        };
        assert!(decode_cursor("acme", &with_limit, &c).is_ok());
        let other = JobFilter::default();
        let e = decode_cursor("acme", &other, &c).unwrap_err().to_string();
        assert!(e.contains("cursor") && e.contains("another filter"), "{e}");
        for bad in [
            "",
            "!!!",
            "bm90LWEtY3Vyc29y",
            &URL_SAFE_NO_PAD.encode(format!("{}:x/../y", running.digest("acme"))),
            &"A".repeat(300),
        ] {
            let e = decode_cursor("acme", &running, bad)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("cursor "), "{bad}: {e}");
        }
    }
}
