//! The collector run by the leader: per tenant and pass, one bounded page of each kind (jobs
//! oldest first, agents, idempotency keys) read with [`Store::list_range`] from the cursor in
//! the tenant's [`GcState`], decided by the pure policy of [`super`], and committed as one
//! fenced transaction per page that deletes what goes (each deletion expecting the version it
//! read) and writes the new `gc/state` (expecting the version it read).
//!
//! Guarantees:
//! - a pass reads at most `batch` objects of each kind per tenant, plus the few objects of the
//!   jobs it deletes (queue entry, secrets, inbox entries, key; their attempts and output chunks
//!   in one range read each for the page, of at most `2 × batch + 8` attempts and
//!   `MAX_OPS_PER_TXN` chunks), the inbox of each agent that is otherwise due, and the target
//!   records of the agents its finished reconciler jobs ran on (at most `batch` agents times
//!   the tenant's states);
//! - a batch is all-or-nothing: a job that changed after it was read, a target record that moved,
//!   a `gc/state` written by another leader, fail the whole batch, which is decided again from
//!   fresh reads on the next pass; a leader killed in the middle leaves either the whole batch
//!   or none of it;
//! - a job with more output chunks than one transaction holds loses its chunks first, in
//!   transactions that check the job is still the finished record that was read; its record
//!   goes last, so nothing is ever left unreachable.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::ControlFlow;

use serde::de::DeserializeOwned;

use super::{
    GcState, JobFacts, JobKind, JobRules, Keep, LastSweep, MAX_OPS_PER_TXN, PageSeen, Progress,
    RetentionConfig, TargetProgress, Verdict, behind_after, collect_agent, collect_idempotency_key,
    decide_jobs, job_paths,
};
use crate::keys;
use crate::model::{Agent, Attempt, Job, Millis};
use crate::quota::Quota;
use crate::reconcile::{RECONCILER, TargetStatus};
use crate::store::{DynStore, Entry, Epoch, Expect, Key, Op, Range, StoreError, Txn, Version};

type Result<T, E = StoreError> = std::result::Result<T, E>;

/// What one pass did for one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    pub deleted: super::Deleted,
    /// Batches that lost a race (an object changed after it was read); retried next pass.
    pub conflicts: u64,
    /// The jobs collected (their records as read), for the node's history.
    pub jobs: Vec<Job>,
}

/// What the collector remembers of a tenant during one term: the per-target counts of
/// reconciler jobs (not stored), tied to the sweep they belong to.
#[derive(Clone, Debug, Default)]
struct Memory {
    /// The cursor the in-progress counts end at.
    cursor: Option<String>,
    targets: Option<TargetProgress>,
    last_targets: Option<BTreeMap<String, u64>>,
}

/// The collector of one leader term.
#[derive(Debug)]
pub struct Collector {
    store: DynStore,
    cfg: RetentionConfig,
    memory: HashMap<String, Memory>,
}

fn dec<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

/// The target a reconciler job is counted under: its agent and its command (a state's check
/// and apply commands are counted apart). `None` for a user job.
/// The rollout a rollout job belongs to (its group).
pub fn rollout_of(job: &Job) -> Option<&str> {
    (job.kind == crate::model::JobKind::Rollout)
        .then_some(job.group.as_deref())
        .flatten()
}

pub fn reconciler_target(job: &Job) -> Option<String> {
    // Jobs written before kinds existed are known by their submitter.
    (job.kind == crate::model::JobKind::Reconciler || job.submitted_by == RECONCILER).then(|| {
        format!(
            "{}|{}",
            job.node_id.as_deref().unwrap_or(""),
            job.command.display()
        )
    })
}

/// The job ids a target record points at: the one in flight, the last one, and its events'.
pub fn referenced_jobs(t: &TargetStatus) -> impl Iterator<Item = &str> {
    t.in_flight
        .iter()
        .map(|f| f.job_id.as_str())
        .chain(t.last_job.as_deref())
        .chain(t.events.iter().filter_map(|e| e.job_id.as_deref()))
}

impl Collector {
    pub fn new(store: DynStore, cfg: RetentionConfig) -> Collector {
        Collector {
            store,
            cfg,
            memory: HashMap::new(),
        }
    }

    pub fn store(&self) -> &DynStore {
        &self.store
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.cfg
    }

    /// One pass over `tenant` under `epoch` at `now`: a page of jobs, of agents and of
    /// idempotency keys. Fails only on a store error (a fence included); a lost race is counted
    /// in the report and left to the next pass.
    pub async fn pass(
        &mut self,
        tenant: &str,
        quota: &Quota,
        epoch: Epoch,
        now: Millis,
    ) -> Result<PassReport> {
        let rules = self.cfg.for_tenant(quota);
        let mut report = PassReport::default();
        let sk = Key::new(tenant, keys::GC_STATE)?;
        let (mut st, mut sv) = match self.store.get(&sk).await? {
            None => (GcState::default(), None),
            Some(v) => match dec::<GcState>(&v.value) {
                Some(s) => (s, Some(v.version)),
                // An unreadable record is started afresh (it holds only counts and cursors).
                None => (GcState::default(), Some(v.version)),
            },
        };
        for kind in [Kind::Jobs, Kind::Agents, Kind::Idempotency] {
            let before = st.clone();
            let mut next = st.clone();
            let (ops, mem, jobs) = match kind {
                Kind::Jobs => {
                    self.jobs_page(tenant, &rules, epoch, now, &mut next)
                        .await?
                }
                Kind::Agents => (
                    self.agents_page(tenant, now, &mut next).await?,
                    None,
                    vec![],
                ),
                Kind::Idempotency => (self.idem_page(tenant, now, &mut next).await?, None, vec![]),
            };
            // A pass that deletes nothing and moves no cursor or count writes nothing: an idle
            // tenant costs reads only.
            if ops.is_empty() && same_but_sweeps(&next, &before) {
                if let Some(m) = mem {
                    self.memory.insert(tenant.to_string(), m);
                }
                continue;
            }
            next.updated_at = now;
            next.epoch = epoch;
            let mut txn = Txn::new().fenced(epoch);
            txn.ops = ops;
            let txn = txn.put(
                sk.clone(),
                serde_json::to_vec(&next).expect("gc state serializes"),
                sv.map_or(Expect::Absent, Expect::Version),
            );
            match self.store.commit(txn).await {
                Ok(v) => {
                    report.deleted.add(&delta(&before.deleted, &next.deleted));
                    report.jobs.extend(jobs);
                    if let Some(m) = mem {
                        self.memory.insert(tenant.to_string(), m);
                    }
                    st = next;
                    sv = Some(v);
                }
                Err(StoreError::Conflict { .. }) => {
                    report.conflicts += 1;
                    return Ok(report);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Decides one page of jobs into deletions (updating `st`); returns the operations, the
    /// tenant's memory once they commit, and the jobs they collect.
    async fn jobs_page(
        &self,
        tenant: &str,
        rules: &JobRules,
        epoch: Epoch,
        now: Millis,
        st: &mut GcState,
    ) -> Result<(Vec<Op>, Option<Memory>, Vec<Job>)> {
        let batch = self.cfg.batch;
        let mut range = Range::first(keys::JOBS, batch);
        if let Some(c) = &st.jobs_cursor {
            range = range.after(c.clone());
        }
        let entries = self.store.list_range(tenant, &range).await?;
        let mem = self.page_memory(tenant, st);
        let last = LastSweep {
            user_kept: st.counted.finished_user_jobs,
            targets: mem.last_targets.clone(),
        };
        let jobs: Vec<(Option<Job>, &crate::store::Entry)> =
            entries.iter().map(|e| (dec::<Job>(&e.value), e)).collect();
        let refs = self.target_references(tenant, &jobs).await?;
        let live_rollouts = self.unfinished_rollouts(tenant, &jobs).await?;
        let mut progress = st.progress.clone();
        progress.targets = mem.targets.clone();
        let page = JobsPage {
            tenant,
            rules,
            epoch,
            now,
            last,
            jobs,
            refs,
            live_rollouts,
        };
        let complete = entries.len() < batch;
        let mut w = JobsWalk::new(st, progress, complete);
        for (i, (job, entry)) in page.jobs.iter().enumerate() {
            let Some(job) = job else {
                // Unreadable: kept, never deleted.
                w.progress.jobs_kept += 1;
                w.cursor = Some(entry.key.path().to_string());
                continue;
            };
            if self
                .decide_job(&page, &mut w, i, job, entry)
                .await?
                .is_break()
            {
                break;
            }
            w.cursor = Some(entry.key.path().to_string());
        }
        Ok(w.finish(mem, epoch, now))
    }

    /// The tenant's memory for a page of jobs at `st`'s cursor, restarting the counts of a sweep.
    fn page_memory(&self, tenant: &str, st: &mut GcState) -> Memory {
        let mut mem = self.memory.get(tenant).cloned().unwrap_or_default();
        if st.jobs_cursor.is_none() {
            // A sweep starts: its per-target counts are complete.
            st.progress = Progress::default();
            mem.targets = Some(TargetProgress::default());
        } else if mem.cursor != st.jobs_cursor {
            // Resumed (a new term, or someone else's batch): no per-target counts this sweep.
            mem.targets = None;
        }
        mem
    }

    /// Decides the page's job `i` and adds its deletions when it goes; breaks the page's walk.
    async fn decide_job(
        &self,
        page: &JobsPage<'_>,
        w: &mut JobsWalk<'_>,
        i: usize,
        job: &Job,
        entry: &Entry,
    ) -> Result<ControlFlow<()>> {
        let kind = match reconciler_target(job) {
            Some(target) => JobKind::Reconciler { target },
            None => JobKind::User,
        };
        let facts = page.facts(job, &kind);
        let before = w.progress.clone();
        let verdict = decide_jobs(page.now, page.rules, &page.last, &mut w.progress, &[facts])[0];
        w.young |= verdict == Verdict::Keep(Keep::Young);
        w.finished |= job.status.is_terminal();
        if let Verdict::Collect(_) = verdict {
            if w.spans.is_none() {
                let rest: Vec<&str> = page.jobs[i..]
                    .iter()
                    .filter_map(|(j, _)| j.as_ref().map(|j| j.job_id.as_str()))
                    .collect();
                w.spans = Some(self.spans(page.tenant, &rest).await?);
            }
            let (attempts, chunks) = w.spans.as_ref().expect("read above");
            let read = (
                attempts.of(&keys::attempts(&job.job_id)),
                chunks.of(&keys::job_output(&job.job_id)),
            );
            let Some(mut job_ops) = self.job_ops(page.tenant, job, entry.version, read).await?
            else {
                // Too many objects for one transaction: its output goes first, alone.
                w.progress = before;
                w.complete = false;
                if w.ops.is_empty() {
                    self.purge_output(page.tenant, job, entry.version, page.epoch)
                        .await?;
                    w.purged = true;
                }
                return Ok(ControlFlow::Break(()));
            };
            page.reference_checks(&mut w.checked, job, &kind, &mut job_ops)?;
            if !w.ops.is_empty() && w.ops.len() + job_ops.len() > MAX_OPS_PER_TXN - 1 {
                w.progress = before;
                w.complete = false;
                return Ok(ControlFlow::Break(()));
            }
            count_deleted(&mut w.st.deleted, &kind, &job_ops);
            w.ops.extend(job_ops);
            w.collected.push(job.clone());
        }
        Ok(ControlFlow::Continue(()))
    }

    /// The attempts and the output chunks of the jobs `ids` (one page's, in order), read with
    /// one range read each.
    async fn spans(&self, tenant: &str, ids: &[&str]) -> Result<(Span, Span)> {
        let attempts = ids.iter().map(|id| keys::attempts(id));
        let outputs = ids.iter().map(|id| keys::job_output(id));
        let per_job = (ids.len() * 2 + 8).min(MAX_OPS_PER_TXN);
        Ok((
            Span::read(&self.store, tenant, keys::ATTEMPTS, attempts, per_job).await?,
            Span::read(&self.store, tenant, keys::OUTPUT, outputs, MAX_OPS_PER_TXN).await?,
        ))
    }

    /// The deletions of one job that goes (each expecting what was read), or `None` when they
    /// do not fit one transaction. `read` holds its attempts and output chunks where a
    /// [`Span`] covered them; what it lacks is read here.
    async fn job_ops(
        &self,
        tenant: &str,
        job: &Job,
        version: Version,
        read: (Option<Vec<Entry>>, Option<Vec<Entry>>),
    ) -> Result<Option<Vec<Op>>> {
        let attempts = match read.0 {
            Some(a) => a,
            None => {
                self.store
                    .list_range(tenant, &Range::first(keys::attempts(&job.job_id), 256))
                    .await?
            }
        };
        let decoded: Vec<Attempt> = attempts
            .iter()
            .filter_map(|e| dec::<Attempt>(&e.value))
            .collect();
        let paths = job_paths(job, &decoded);
        let mut ops = Vec::new();
        let jk = Key::new(tenant, keys::job(&job.job_id))?;
        for p in &paths.exact {
            if *p == keys::job(&job.job_id) {
                continue;
            }
            let k = Key::new(tenant, p.clone())?;
            if let Some(v) = self.store.get(&k).await? {
                ops.push(Op::Delete {
                    key: k,
                    expect: Expect::Version(v.version),
                });
            }
        }
        // Attempt records that did not decode go too: they are under the job's prefix.
        for e in &attempts {
            if !ops.iter().any(|o| o.key() == &e.key) {
                ops.push(Op::Delete {
                    key: e.key.clone(),
                    expect: Expect::Version(e.version),
                });
            }
        }
        let mut read_chunks = read.1;
        for prefix in &paths.prefixes {
            let chunks = match read_chunks.take_if(|_| *prefix == keys::job_output(&job.job_id)) {
                Some(c) => c,
                None => {
                    self.store
                        .list_range(tenant, &Range::first(prefix.clone(), MAX_OPS_PER_TXN))
                        .await?
                }
            };
            if chunks.len() + ops.len() + 2 >= MAX_OPS_PER_TXN {
                return Ok(None);
            }
            ops.extend(chunks.into_iter().map(|e| Op::Delete {
                key: e.key,
                expect: Expect::Version(e.version),
            }));
        }
        if let Some(k) = &job.idempotency_key {
            let ik = Key::new(tenant, keys::idempotency(k))?;
            if let Some(v) = self.store.get(&ik).await?
                && v.value == job.job_id.as_bytes()
            {
                ops.push(Op::Delete {
                    key: ik,
                    expect: Expect::Version(v.version),
                });
            }
        }
        ops.push(Op::Delete {
            key: jk,
            expect: Expect::Version(version),
        });
        Ok(Some(ops))
    }

    /// Deletes one transaction's worth of a collected job's output chunks, checking that the
    /// job is still the record that was read.
    async fn purge_output(
        &self,
        tenant: &str,
        job: &Job,
        version: Version,
        epoch: Epoch,
    ) -> Result<()> {
        let chunks = self
            .store
            .list_range(
                tenant,
                &Range::first(keys::job_output(&job.job_id), MAX_OPS_PER_TXN - 1),
            )
            .await?;
        let mut txn = Txn::new().fenced(epoch);
        for e in chunks {
            txn = txn.delete(e.key, Expect::Version(e.version));
        }
        txn = txn.check(
            Key::new(tenant, keys::job(&job.job_id))?,
            Expect::Version(version),
        );
        match self.store.commit(txn).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The target records of the agents that the page's finished reconciler jobs ran on, and
    /// the jobs they point at.
    /// The rollouts still unfinished (their `rollout_active/` marker exists) among those the
    /// page's finished rollout jobs belong to: their jobs are kept until the rollout has read
    /// every result and finished.
    async fn unfinished_rollouts(
        &self,
        tenant: &str,
        jobs: &[(Option<Job>, &crate::store::Entry)],
    ) -> Result<BTreeSet<String>> {
        let ids: BTreeSet<&str> = jobs
            .iter()
            .filter_map(|(j, _)| j.as_ref())
            .filter(|j| j.status.is_terminal())
            .filter_map(rollout_of)
            .collect();
        let mut live = BTreeSet::new();
        for id in ids {
            if self
                .store
                .get(&Key::new(tenant, keys::rollout_active(id))?)
                .await?
                .is_some()
            {
                live.insert(id.to_string());
            }
        }
        Ok(live)
    }

    async fn target_references(
        &self,
        tenant: &str,
        jobs: &[(Option<Job>, &crate::store::Entry)],
    ) -> Result<References> {
        let agents: BTreeSet<&str> = jobs
            .iter()
            .filter_map(|(j, _)| j.as_ref())
            .filter(|j| j.status.is_terminal() && j.submitted_by == RECONCILER)
            .filter_map(|j| j.node_id.as_deref())
            .collect();
        let mut refs = References::default();
        if agents.is_empty() {
            return Ok(refs);
        }
        let states: Vec<String> = self
            .store
            .list(tenant, keys::STATES)
            .await?
            .into_iter()
            .filter_map(|e| e.key.path().strip_prefix(keys::STATES).map(str::to_string))
            .collect();
        for agent in agents {
            for state in &states {
                let k = Key::new(tenant, keys::status(state, agent))?;
                let got = self.store.get(&k).await?;
                if let Some(v) = &got {
                    match dec::<TargetStatus>(&v.value) {
                        Some(t) => refs.jobs.extend(referenced_jobs(&t).map(str::to_string)),
                        // Unreadable: it might point at any of the agent's jobs.
                        None => {
                            refs.unreadable.insert(agent.to_string());
                        }
                    }
                }
                refs.records
                    .entry(agent.to_string())
                    .or_default()
                    .push((k, got.map(|v| v.version)));
            }
        }
        // An agent with an unreadable target record keeps every reconciler job it ran.
        for (j, _) in jobs {
            if let Some(j) = j
                && j.node_id
                    .as_ref()
                    .is_some_and(|a| refs.unreadable.contains(a))
            {
                refs.jobs.insert(j.job_id.clone());
            }
        }
        Ok(refs)
    }

    /// Decides one page of agents (updating `st`); returns the deletions.
    async fn agents_page(&self, tenant: &str, now: Millis, st: &mut GcState) -> Result<Vec<Op>> {
        let batch = self.cfg.batch;
        let mut sweep = Sweep {
            cursor: &mut st.agents_cursor,
            kept: &mut st.agents_kept,
            counted: &mut st.counted.agents,
            deleted: &mut st.deleted.agents,
        };
        let page = self
            .store
            .list_range(tenant, &sweep.range(keys::AGENTS, batch))
            .await?;
        let mut ops = Vec::new();
        for e in &page {
            let gone = match dec::<Agent>(&e.value) {
                // Its inbox is read only when nothing else keeps it (a range read per agent and
                // pass would cost more than the rest of the pass).
                Some(a) => {
                    let due = |inbox_empty| {
                        let retention = self.cfg.dead_agent_retention;
                        collect_agent(now, retention, a.state, a.last_seen, inbox_empty)
                    };
                    due(true)
                        && due(self
                            .store
                            .list_range(tenant, &Range::first(keys::inbox(&a.node_id), 1))
                            .await?
                            .is_empty())
                }
                None => false,
            };
            sweep.decide(e, gone, &mut ops);
        }
        sweep.finish(&page, batch);
        Ok(ops)
    }

    /// Decides one page of idempotency keys (updating `st`); returns the deletions.
    async fn idem_page(&self, tenant: &str, now: Millis, st: &mut GcState) -> Result<Vec<Op>> {
        let batch = self.cfg.batch;
        let mut sweep = Sweep {
            cursor: &mut st.idem_cursor,
            kept: &mut st.idem_kept,
            counted: &mut st.counted.idempotency_keys,
            deleted: &mut st.deleted.idempotency_keys,
        };
        let page = self
            .store
            .list_range(tenant, &sweep.range(keys::IDEMPOTENCY, batch))
            .await?;
        let mut ops = Vec::new();
        for e in &page {
            let job_id = String::from_utf8_lossy(&e.value).to_string();
            let created = match Key::new(tenant, keys::job(&job_id)) {
                Err(_) => Some(None),
                Ok(jk) => match self.store.get(&jk).await? {
                    None => Some(None),
                    // An unreadable job keeps its key.
                    Some(v) => dec::<Job>(&v.value).map(|j| Some(j.created_at)),
                },
            };
            let gone = created
                .is_some_and(|c| collect_idempotency_key(now, self.cfg.idempotency_window, c));
            sweep.decide(e, gone, &mut ops);
        }
        sweep.finish(&page, batch);
        Ok(ops)
    }
}

/// What a page of jobs read before its jobs are decided, the same for each of them.
struct JobsPage<'a> {
    tenant: &'a str,
    rules: &'a JobRules,
    epoch: Epoch,
    now: Millis,
    last: LastSweep,
    jobs: Vec<(Option<Job>, &'a Entry)>,
    refs: References,
    live_rollouts: BTreeSet<String>,
}

impl JobsPage<'_> {
    /// What the policy is told of `job`, counted under `kind`.
    fn facts(&self, job: &Job, kind: &JobKind) -> JobFacts {
        JobFacts {
            job_id: job.job_id.clone(),
            status: job.status,
            created_at: job.created_at,
            finished_at: job.finished_at,
            referenced: self.refs.jobs.contains(job.job_id.as_str())
                || rollout_of(job).is_some_and(|id| self.live_rollouts.contains(id)),
            has_idempotency_key: job.idempotency_key.is_some(),
            kind: kind.clone(),
        }
    }

    /// Adds to `job_ops` the checks (once per page) that what says nobody needs `job` still does.
    fn reference_checks(
        &self,
        checked: &mut BTreeSet<Key>,
        job: &Job,
        kind: &JobKind,
        job_ops: &mut Vec<Op>,
    ) -> Result<()> {
        if matches!(kind, JobKind::Reconciler { .. }) {
            // The records that said nobody points at this job must still say so.
            for (k, v) in self.refs.records_of(job.node_id.as_deref().unwrap_or("")) {
                if checked.insert(k.clone()) {
                    job_ops.push(Op::Check {
                        key: k.clone(),
                        expect: v.map_or(Expect::Absent, Expect::Version),
                    });
                }
            }
        }
        if let Some(id) = rollout_of(job) {
            // Its rollout finished (it has recorded every result): it must still be.
            let k = Key::new(self.tenant, keys::rollout_active(id))?;
            if checked.insert(k.clone()) {
                job_ops.push(Op::Check {
                    key: k,
                    expect: Expect::Absent,
                });
            }
        }
        Ok(())
    }
}

/// How far deciding a page of jobs has gone: its operations so far and what it has seen.
struct JobsWalk<'s> {
    st: &'s mut GcState,
    progress: Progress,
    ops: Vec<Op>,
    checked: BTreeSet<Key>,
    collected: Vec<Job>,
    cursor: Option<String>,
    complete: bool,
    // The attempts and output of the jobs from the first one collected to the end of the
    // page, read once for all of them when that first one is found.
    spans: Option<(Span, Span)>,
    // What the page shows of the collector's progress (`PageSeen`).
    young: bool,
    finished: bool,
    purged: bool,
}

impl<'s> JobsWalk<'s> {
    /// A walk of a page from `st`'s cursor, `complete` when the page ends the jobs.
    fn new(st: &'s mut GcState, progress: Progress, complete: bool) -> JobsWalk<'s> {
        let cursor = st.jobs_cursor.clone();
        JobsWalk {
            st,
            progress,
            ops: Vec::new(),
            checked: BTreeSet::new(),
            collected: Vec::new(),
            cursor,
            complete,
            spans: None,
            young: false,
            finished: false,
            purged: false,
        }
    }

    /// Records in `st` and `mem` where the walk ended; returns the page's result.
    fn finish(
        self,
        mut mem: Memory,
        epoch: Epoch,
        now: Millis,
    ) -> (Vec<Op>, Option<Memory>, Vec<Job>) {
        let JobsWalk {
            st,
            mut progress,
            ops,
            collected,
            cursor,
            complete,
            young,
            finished,
            purged,
            ..
        } = self;
        mem.targets = progress.targets.take();
        let seen = if young || complete {
            PageSeen::Frontier
        } else if !ops.is_empty() || purged {
            PageSeen::Deleting
        } else if finished {
            PageSeen::Idle
        } else {
            PageSeen::Unfinished
        };
        let new_term = st.epoch != epoch;
        st.behind_since = behind_after(st.behind_since, seen, now, new_term);
        if complete {
            // The sweep is over: its counts drive the next one.
            st.counted.jobs = Some(progress.jobs_kept);
            st.counted.finished_user_jobs = Some(progress.user_kept);
            st.sweeps += 1;
            st.jobs_cursor = None;
            st.progress = Progress::default();
            mem.last_targets = mem.targets.take().map(|t| t.kept).or(mem.last_targets);
            mem.cursor = None;
        } else {
            st.jobs_cursor = cursor.clone();
            st.progress = progress;
            mem.cursor = cursor;
        }
        (ops, Some(mem), collected)
    }
}

/// Where one paged sweep over a key space (agents, idempotency keys) keeps its place in
/// [`GcState`]: its cursor, the entries it kept so far, the count of a finished sweep, and its
/// deletions.
struct Sweep<'a> {
    cursor: &'a mut Option<String>,
    kept: &'a mut u64,
    counted: &'a mut Option<u64>,
    deleted: &'a mut u64,
}

impl Sweep<'_> {
    /// The range of the next page over `prefix`: after the cursor, or from the start (a sweep
    /// that starts over counts what it keeps anew).
    fn range(&mut self, prefix: &str, batch: usize) -> Range {
        let mut range = Range::first(prefix, batch);
        if let Some(c) = &*self.cursor {
            range = range.after(c.clone());
        } else {
            *self.kept = 0;
        }
        range
    }

    /// One entry decided: its deletion (conditional on the version read), or one more kept.
    fn decide(&mut self, e: &Entry, gone: bool, ops: &mut Vec<Op>) {
        if gone {
            ops.push(Op::Delete {
                key: e.key.clone(),
                expect: Expect::Version(e.version),
            });
            *self.deleted += 1;
        } else {
            *self.kept += 1;
        }
    }

    /// After a page: a short one ends the sweep (what it kept is the count), a full one moves
    /// the cursor past its last entry.
    fn finish(self, page: &[Entry], batch: usize) {
        if page.len() < batch {
            *self.counted = Some(*self.kept);
            *self.cursor = None;
        } else {
            *self.cursor = page.last().map(|e| e.key.path().to_string());
        }
    }
}

/// One range read over a key space (`attempts/`, `output/`) that serves the per-job prefixes of
/// a page of jobs: from just below the smallest of them, up to a limit. Job ids are ordered by
/// creation, so a page's attempts and chunks are one stretch of their key space, and a page
/// costs two reads instead of two per job (each range read waits for the blocking pool and then
/// for the runtime, which under load capped collection below the rate jobs were made).
struct Span {
    entries: Vec<Entry>,
    /// Whether the read stopped at its limit (then only what lies before its last entry is
    /// known to be complete).
    cut: bool,
    /// The read started after this path.
    from: String,
}

impl Span {
    async fn read(
        store: &DynStore,
        tenant: &str,
        space: &str,
        prefixes: impl Iterator<Item = String>,
        limit: usize,
    ) -> Result<Span> {
        let Some(lowest) = prefixes.min() else {
            return Ok(Span {
                entries: vec![],
                cut: false,
                from: String::new(),
            });
        };
        // Just below every path under `lowest` (it ends in a separator).
        let from = lowest[..lowest.len() - 1].to_string();
        let entries = store
            .list_range(tenant, &Range::first(space, limit).after(from.clone()))
            .await?;
        Ok(Span {
            cut: entries.len() >= limit,
            entries,
            from,
        })
    }

    /// Every entry under `prefix`, or `None` when the read may not have covered them all.
    fn of(&self, prefix: &str) -> Option<Vec<Entry>> {
        if prefix <= self.from.as_str() {
            return None;
        }
        if self.cut {
            // Complete only when the read went on past the last path under `prefix`.
            let last = self.entries.last()?.key.path();
            if last <= prefix || last.starts_with(prefix) {
                return None;
            }
        }
        let lo = self.entries.partition_point(|e| e.key.path() < prefix);
        let n = self.entries[lo..]
            .iter()
            .take_while(|e| e.key.path().starts_with(prefix))
            .count();
        Some(self.entries[lo..lo + n].to_vec())
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Jobs,
    Agents,
    Idempotency,
}

/// The target records read for a page, per agent, and the jobs they point at.
#[derive(Default)]
struct References {
    jobs: BTreeSet<String>,
    records: BTreeMap<String, Vec<(Key, Option<Version>)>>,
    unreadable: BTreeSet<String>,
}

impl References {
    fn records_of(&self, agent: &str) -> impl Iterator<Item = &(Key, Option<Version>)> {
        self.records.get(agent).into_iter().flatten()
    }
}

fn count_deleted(d: &mut super::Deleted, kind: &JobKind, ops: &[Op]) {
    match kind {
        JobKind::User => d.jobs += 1,
        JobKind::Reconciler { .. } => d.reconciler_jobs += 1,
    }
    for op in ops {
        if let Op::Delete { key, .. } = op {
            let p = key.path();
            if p.starts_with(keys::ATTEMPTS) {
                d.attempts += 1;
            } else if p.starts_with(keys::OUTPUT) {
                d.output_chunks += 1;
            } else if p.starts_with(keys::IDEMPOTENCY) {
                d.idempotency_keys += 1;
            }
        }
    }
}

/// Whether two records differ at most in their sweep count and stamps.
fn same_but_sweeps(a: &GcState, b: &GcState) -> bool {
    let plain = |s: &GcState| GcState {
        sweeps: 0,
        updated_at: 0,
        epoch: 0,
        ..s.clone()
    };
    plain(a) == plain(b)
}

fn delta(before: &super::Deleted, after: &super::Deleted) -> super::Deleted {
    super::Deleted {
        jobs: after.jobs - before.jobs,
        reconciler_jobs: after.reconciler_jobs - before.reconciler_jobs,
        attempts: after.attempts - before.attempts,
        output_chunks: after.output_chunks - before.output_chunks,
        idempotency_keys: after.idempotency_keys - before.idempotency_keys,
        agents: after.agents - before.agents,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(paths: &[&str], cut: bool, from: &str) -> Span {
        Span {
            entries: paths
                .iter()
                .map(|p| Entry {
                    key: Key::new("t", *p).unwrap(),
                    version: 1,
                    value: vec![],
                })
                .collect(),
            cut,
            from: from.to_string(),
        }
    }

    fn paths(got: Option<Vec<Entry>>) -> Option<Vec<String>> {
        got.map(|v| v.iter().map(|e| e.key.path().to_string()).collect())
    }

    #[test]
    fn a_whole_read_serves_every_prefix_after_its_start() {
        let s = span(
            &[
                "attempts/j-1/0001",
                "attempts/j-2/0001",
                "attempts/j-2/0002",
            ],
            false,
            "attempts/j-1",
        );
        assert_eq!(
            paths(s.of("attempts/j-2/")),
            Some(vec!["attempts/j-2/0001".into(), "attempts/j-2/0002".into()])
        );
        // Nothing under it: an empty answer, which is complete.
        assert_eq!(paths(s.of("attempts/j-3/")), Some(vec![]));
        // Below where the read started: unknown.
        assert_eq!(paths(s.of("attempts/j-0/")), None);
    }

    #[test]
    fn a_cut_read_serves_only_what_lies_wholly_before_its_last_entry() {
        let s = span(
            &["output/j-1.1/01", "output/j-1.1/02", "output/j-2.1/01"],
            true,
            "output/j-1",
        );
        assert_eq!(
            paths(s.of("output/j-1.")),
            Some(vec!["output/j-1.1/01".into(), "output/j-1.1/02".into()])
        );
        // The read may have stopped inside j-2's chunks, or before j-3's.
        assert_eq!(paths(s.of("output/j-2.")), None);
        assert_eq!(paths(s.of("output/j-3.")), None);
    }
}
