//! Retention: what the leader's garbage collector deletes, and when. This module is the pure
//! policy over plain data; [`driver`] reads bounded pages from the store, asks the policy and
//! commits each batch as one fenced transaction together with the tenant's [`GcState`].
//!
//! Rules (defaults in brackets, each a fluxd flag):
//! - a finished job, with its attempts, output chunks, secrets and inbox entries, is deleted
//!   once it ended more than `--job-retention` ago [7d], or once the tenant holds more than
//!   `--job-retention-count` [100000] finished jobs newer than it (the newest are kept); a
//!   tenant's quota may override both (`job_retention_secs`, `job_retention_count`);
//! - reconciler jobs follow the same time rule, and beyond it only the last
//!   `--reconciler-jobs-kept` [10] of each target are kept (a target's status record keeps its
//!   events and the output tail of its last failure itself, so losing old jobs loses nothing
//!   the record shows);
//! - an idempotency key names its first job for `--idempotency-window` [24h] after that job
//!   was created ([`idempotency_live`], which submission honours too, before any collection);
//!   after that the key record is deleted and the key may name a new job;
//! - a dead agent is deleted `--dead-agent-retention` [7d] after it was last seen, unless its
//!   inbox still holds a task.
//!
//! Guarantees:
//! - never deleted: a job that is not finished, a job a desired-state target record points to
//!   (in flight, last job, or an event), a job of a rollout that has not finished (its
//!   `rollout_active/` marker exists: the rollout may not have read its result yet; the
//!   deletion checks the marker is still absent), a job a live idempotency key names;
//! - every deletion expects the versions it read, so an object that changed in between is not
//!   deleted (the batch fails and is decided again from fresh reads);
//! - count-based deletion never keeps fewer than the count: it works from the finished jobs
//!   the last complete sweep kept, which can only be fewer than what the store holds now.
//!
//! Per-tenant counts without a scan of the history per pass: the collector sweeps `jobs/`
//! oldest first, one bounded page per pass, and counts what it keeps; a complete sweep's
//! count drives the next sweep's count-based deletions. The tenant's counts and cursor live in
//! its `gc/state` record, written in the same transaction as each batch, so a new leader (or a
//! restore) resumes where the last batch ended. Per-target counts of reconciler jobs are kept
//! in the leader's memory only, rebuilt by the first complete sweep of each term.

pub mod driver;

pub use driver::{Collector, PassReport};

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::model::{AgentState, Attempt, Job, JobStatus, Millis};
use crate::quota::Quota;

/// Default of `--job-retention`.
pub const DEFAULT_JOB_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default of `--job-retention-count`.
pub const DEFAULT_JOB_RETENTION_COUNT: u64 = 100_000;
/// Default of `--reconciler-jobs-kept`.
pub const DEFAULT_RECONCILER_KEEP: u64 = 10;
/// Default of `--idempotency-window`.
pub const DEFAULT_IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Default of `--dead-agent-retention`.
pub const DEFAULT_DEAD_AGENT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default of `--gc-interval`.
pub const DEFAULT_GC_INTERVAL: Duration = Duration::from_secs(60);
/// Default of `--gc-batch`: objects of each kind looked at per tenant and pass.
pub const DEFAULT_GC_BATCH: usize = 256;
/// Largest `--gc-batch`.
pub const MAX_GC_BATCH: usize = 1000;
/// Most operations in one collection transaction; a job with more objects than this (a long
/// output) loses its output chunks in transactions of their own first.
pub const MAX_OPS_PER_TXN: usize = 2048;

/// The collector's settings (fluxd flags).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionConfig {
    pub job_retention: Duration,
    pub job_retention_count: u64,
    pub reconciler_keep: u64,
    pub idempotency_window: Duration,
    pub dead_agent_retention: Duration,
    pub interval: Duration,
    pub batch: usize,
    /// How much of each tenant's event log is kept.
    pub events: crate::events::Bounds,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            job_retention: DEFAULT_JOB_RETENTION,
            job_retention_count: DEFAULT_JOB_RETENTION_COUNT,
            reconciler_keep: DEFAULT_RECONCILER_KEEP,
            idempotency_window: DEFAULT_IDEMPOTENCY_WINDOW,
            dead_agent_retention: DEFAULT_DEAD_AGENT_RETENTION,
            interval: DEFAULT_GC_INTERVAL,
            batch: DEFAULT_GC_BATCH,
            events: crate::events::Bounds::default(),
        }
    }
}

impl RetentionConfig {
    /// Why the settings cannot be used, if they cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.job_retention_count == 0 || self.reconciler_keep == 0 {
            return Err(
                "--job-retention-count and --reconciler-jobs-kept must be at least 1".into(),
            );
        }
        if self.interval.is_zero() {
            return Err("--gc-interval must be above zero".into());
        }
        if !(1..=MAX_GC_BATCH).contains(&self.batch) {
            return Err(format!("--gc-batch must be between 1 and {MAX_GC_BATCH}"));
        }
        Ok(())
    }

    /// The job rules of one tenant: the flags, overridden by its quota.
    pub fn for_tenant(&self, quota: &Quota) -> JobRules {
        JobRules {
            retention_ms: quota
                .job_retention_secs
                .map_or(ms(self.job_retention), |s| s.saturating_mul(1000)),
            count: quota
                .job_retention_count
                .unwrap_or(self.job_retention_count),
            reconciler_keep: self.reconciler_keep,
            idempotency_window_ms: ms(self.idempotency_window),
        }
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether an idempotency key whose job was created at `created_at` still names that job at
/// `now`. The one rule for submission (a live key returns the first job, an expired one names
/// the new job) and for the collector (a live key keeps its job; an expired one is deleted).
pub fn idempotency_live(created_at: Millis, now: Millis, window: Duration) -> bool {
    now < created_at.saturating_add(ms(window))
}

/// The job rules of one tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobRules {
    pub retention_ms: u64,
    pub count: u64,
    pub reconciler_keep: u64,
    pub idempotency_window_ms: u64,
}

/// Who a job belongs to, for the count rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobKind {
    User,
    /// A reconciler job, with the target whose jobs it is counted among.
    Reconciler {
        target: String,
    },
}

/// What the policy knows of one job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFacts {
    pub job_id: String,
    pub status: JobStatus,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub kind: JobKind,
    /// A desired-state target record points at the job.
    pub referenced: bool,
    /// The job was submitted with an idempotency key.
    pub has_idempotency_key: bool,
}

/// Why a job stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    Unfinished,
    Referenced,
    IdempotencyKeyLive,
    Young,
}

/// Why a job goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collect {
    /// It ended longer ago than the retention.
    Expired,
    /// More finished jobs than the count are newer than it.
    OverCount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Keep(Keep),
    Collect(Collect),
}

/// A sweep over a tenant's jobs in progress: what it has looked at and kept so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Finished user jobs looked at (kept or collected).
    #[serde(default)]
    pub user_seen: u64,
    /// Finished user jobs kept.
    #[serde(default)]
    pub user_kept: u64,
    /// Job records kept (finished or not).
    #[serde(default)]
    pub jobs_kept: u64,
    /// Per target, finished reconciler jobs looked at and kept; `None` when the sweep was
    /// resumed by a new leader (these counts live in memory only), so this sweep applies no
    /// per-target count.
    #[serde(skip)]
    pub targets: Option<TargetProgress>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetProgress {
    pub seen: BTreeMap<String, u64>,
    pub kept: BTreeMap<String, u64>,
}

/// What the last complete sweep kept, which drives the count rules of the current one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LastSweep {
    /// Finished user jobs kept (`None`: no sweep completed yet).
    pub user_kept: Option<u64>,
    /// Finished reconciler jobs kept per target (`None`: none completed in this term).
    pub targets: Option<BTreeMap<String, u64>>,
}

/// Decides a page of a tenant's jobs, oldest first, continuing the sweep `progress` (updated
/// with what this page looked at). Returns one verdict per job, in order.
pub fn decide_jobs(
    now: Millis,
    rules: &JobRules,
    last: &LastSweep,
    progress: &mut Progress,
    jobs: &[JobFacts],
) -> Vec<Verdict> {
    jobs.iter()
        .map(|j| {
            let v = decide_job(now, rules, last, progress, j);
            if let Verdict::Keep(_) = v {
                progress.jobs_kept += 1;
            }
            v
        })
        .collect()
}

fn decide_job(
    now: Millis,
    rules: &JobRules,
    last: &LastSweep,
    p: &mut Progress,
    j: &JobFacts,
) -> Verdict {
    if !j.status.is_terminal() {
        return Verdict::Keep(Keep::Unfinished);
    }
    // How many finished jobs of the same kind this sweep has looked at before this one, and
    // how many the last sweep kept: the jobs newer than this one number at least the
    // difference (every job the last sweep kept is still there, and newer ones only add).
    let (before, last_kept, limit) = match &j.kind {
        JobKind::User => {
            let before = p.user_seen;
            p.user_seen += 1;
            (Some(before), last.user_kept, rules.count)
        }
        JobKind::Reconciler { target } => {
            let before = p.targets.as_mut().map(|t| {
                let n = t.seen.entry(target.clone()).or_default();
                *n += 1;
                *n - 1
            });
            let last_kept = last
                .targets
                .as_ref()
                .map(|m| m.get(target).copied().unwrap_or(0));
            (before, last_kept, rules.reconciler_keep)
        }
    };
    let verdict = if j.referenced {
        Verdict::Keep(Keep::Referenced)
    } else if j.has_idempotency_key
        && now < j.created_at.saturating_add(rules.idempotency_window_ms)
    {
        Verdict::Keep(Keep::IdempotencyKeyLive)
    } else if now
        >= j.finished_at
            .unwrap_or(j.created_at)
            .saturating_add(rules.retention_ms)
    {
        Verdict::Collect(Collect::Expired)
    } else if let (Some(before), Some(kept)) = (before, last_kept)
        && kept.saturating_sub(before) > limit
    {
        Verdict::Collect(Collect::OverCount)
    } else {
        Verdict::Keep(Keep::Young)
    };
    if let Verdict::Keep(_) = verdict {
        match &j.kind {
            JobKind::User => p.user_kept += 1,
            JobKind::Reconciler { target } => {
                if let Some(t) = p.targets.as_mut() {
                    *t.kept.entry(target.clone()).or_default() += 1;
                }
            }
        }
    }
    verdict
}

/// Whether a dead agent's record goes: dead, last seen longer ago than the retention, and
/// nothing left in its inbox.
pub fn collect_agent(
    now: Millis,
    retention: Duration,
    state: AgentState,
    last_seen: Millis,
    inbox_empty: bool,
) -> bool {
    state == AgentState::Dead && inbox_empty && now >= last_seen.saturating_add(ms(retention))
}

/// Whether an idempotency key record goes: its job is gone (`None`) or its window has passed.
pub fn collect_idempotency_key(
    now: Millis,
    window: Duration,
    job_created_at: Option<Millis>,
) -> bool {
    job_created_at.is_none_or(|c| !idempotency_live(c, now, window))
}

/// The objects that make up one job: exact paths to delete (those that exist) and prefixes
/// whose every object belongs to the job. Every path a job owns is named here and nowhere else,
/// so a new kind of per-job object (an index key) is added to collection in one place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobPaths {
    pub exact: Vec<String>,
    pub prefixes: Vec<String>,
}

/// The paths of `job` and its `attempts` (see [`JobPaths`]): the job record, its queue entry,
/// its secrets, each attempt and the inbox entry it had, and its output chunks. The
/// idempotency key record is not listed: it is deleted only while it still names this job.
pub fn job_paths(job: &Job, attempts: &[Attempt]) -> JobPaths {
    let mut exact = vec![
        keys::job(&job.job_id),
        keys::pending(&job.job_id),
        keys::secrets(&job.job_id),
    ];
    for a in attempts {
        exact.push(keys::attempt(&job.job_id, a.number));
        exact.push(keys::inbox_entry(&a.agent, &a.attempt_id));
    }
    // Its listing index entries, as the job record is now.
    exact.extend(crate::jobs::index_keys(job));
    JobPaths {
        exact,
        prefixes: vec![keys::job_output(&job.job_id)],
    }
}

/// Objects deleted, by kind (the `kind` label of `flux_gc_deleted_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    #[serde(default)]
    pub jobs: u64,
    #[serde(default)]
    pub reconciler_jobs: u64,
    #[serde(default)]
    pub attempts: u64,
    #[serde(default)]
    pub output_chunks: u64,
    #[serde(default)]
    pub idempotency_keys: u64,
    #[serde(default)]
    pub agents: u64,
}

impl Deleted {
    pub fn add(&mut self, o: &Deleted) {
        self.jobs += o.jobs;
        self.reconciler_jobs += o.reconciler_jobs;
        self.attempts += o.attempts;
        self.output_chunks += o.output_chunks;
        self.idempotency_keys += o.idempotency_keys;
        self.agents += o.agents;
    }

    /// `(kind, count)` pairs, the metric's label values.
    pub fn by_kind(&self) -> [(&'static str, u64); 6] {
        [
            ("job", self.jobs),
            ("reconciler_job", self.reconciler_jobs),
            ("attempt", self.attempts),
            ("output_chunk", self.output_chunks),
            ("idempotency_key", self.idempotency_keys),
            ("agent", self.agents),
        ]
    }

    pub fn total(&self) -> u64 {
        self.by_kind().iter().map(|(_, n)| n).sum()
    }
}

/// Object counts of the last complete sweep of each kind (the `kind` label of
/// `flux_store_objects`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counted {
    pub jobs: Option<u64>,
    /// Of which finished user jobs (the count rule's figure).
    pub finished_user_jobs: Option<u64>,
    pub agents: Option<u64>,
    pub idempotency_keys: Option<u64>,
}

/// A tenant's garbage-collection record (`gc/state`), written with every batch: the sweeps'
/// cursors (the last path each looked at), the jobs sweep in progress, the last complete
/// sweeps' counts and the totals deleted so far. It is an ordinary object of the tenant, so a
/// backup carries it and a restore brings the sweep back where the backup saw it.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcState {
    pub jobs_cursor: Option<String>,
    #[serde(default)]
    pub progress: Progress,
    pub agents_cursor: Option<String>,
    #[serde(default)]
    pub agents_kept: u64,
    pub idem_cursor: Option<String>,
    #[serde(default)]
    pub idem_kept: u64,
    #[serde(default)]
    pub counted: Counted,
    /// Complete sweeps over the tenant's jobs that changed something (an idle tenant's
    /// passes write nothing, so they are not counted).
    #[serde(default)]
    pub sweeps: u64,
    #[serde(default)]
    pub deleted: Deleted,
    /// Since when the collector has been behind on this tenant's jobs ([`behind_after`]):
    /// admission refuses the tenant's new jobs once that is longer ago than `--gc-max-lag`
    /// ([`backlog`]).
    pub behind_since: Option<Millis>,
    /// When and under which epoch the last batch was committed.
    #[serde(default)]
    pub updated_at: Millis,
    #[serde(default)]
    pub epoch: u64,
}

/// What one page of a jobs sweep showed about the collector's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageSeen {
    /// It deleted something and did not reach the frontier: more may wait behind it.
    Deleting,
    /// It reached a job still young, or the end of the sweep: nothing older waits.
    Frontier,
    /// It deleted nothing and held only unfinished (or unreadable) jobs: it shows nothing
    /// either way (a run of old queued jobs may lie in front of a backlog).
    Unfinished,
    /// It deleted nothing: its finished jobs are all kept for their own reasons (referenced,
    /// with a live idempotency key), so the collector is not behind here.
    Idle,
}

/// Since when the collector has been behind, after a page (`prev`: before it). A collector
/// that keeps up deletes what expired since its last visit and reaches young jobs within a few
/// back-to-back pages; one that is behind deletes page after page without reaching them. So a
/// run of deleting pages opens at `now`, a frontier or an idle page closes it, and a page of
/// unfinished jobs leaves it as it was. A new term (`new_term`) restarts an open run at `now`:
/// no collector ran while there was no leader.
pub fn behind_after(
    prev: Option<Millis>,
    page: PageSeen,
    now: Millis,
    new_term: bool,
) -> Option<Millis> {
    let restarted = |t: Millis| if new_term { now } else { t };
    match page {
        PageSeen::Deleting => Some(prev.map_or(now, restarted)),
        PageSeen::Unfinished => prev.map(restarted),
        PageSeen::Frontier | PageSeen::Idle => None,
    }
}

/// How long the collector has been behind at `now` (zero when it is not).
pub fn lag(behind_since: Option<Millis>, now: Millis) -> Duration {
    Duration::from_millis(behind_since.map_or(0, |t| now.saturating_sub(t)))
}

/// Why a tenant's new jobs are refused: its collector has been behind longer than
/// `--gc-max-lag`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the collector has been behind on this tenant's finished jobs for {}s, beyond \
     --gc-max-lag ({}s): new jobs wait until it catches up",
    lag.as_secs(),
    max.as_secs()
)]
pub struct Backlog {
    pub lag: Duration,
    pub max: Duration,
}

/// The admission rule for a collection backlog: refused while the collector has been behind
/// for longer than `max_lag` (`None`: never refused).
pub fn backlog(
    behind_since: Option<Millis>,
    now: Millis,
    max_lag: Option<Duration>,
) -> Option<Backlog> {
    let max = max_lag?;
    let lag = lag(behind_since, now);
    (lag > max).then_some(Backlog { lag, max })
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600 * 1000;
    const D: u64 = 24 * H;

    fn rules() -> JobRules {
        RetentionConfig::default().for_tenant(&Quota::default())
    }

    fn job(id: &str, status: JobStatus, finished_at: Option<Millis>) -> JobFacts {
        JobFacts {
            job_id: id.into(),
            status,
            created_at: finished_at.unwrap_or(0).saturating_sub(1000),
            finished_at,
            kind: JobKind::User,
            referenced: false,
            has_idempotency_key: false,
        }
    }

    fn reconciler(id: &str, target: &str, finished_at: Millis) -> JobFacts {
        JobFacts {
            kind: JobKind::Reconciler {
                target: target.into(),
            },
            ..job(id, JobStatus::Succeeded, Some(finished_at))
        }
    }

    fn fresh_sweep() -> Progress {
        Progress {
            targets: Some(TargetProgress::default()),
            ..Progress::default()
        }
    }

    #[test]
    fn finished_jobs_go_after_the_retention_and_unfinished_ones_never() {
        let now = 30 * D;
        let jobs = [
            job("a", JobStatus::Succeeded, Some(now - 8 * D)),
            job("b", JobStatus::Failed, Some(now - 7 * D)),
            job("c", JobStatus::Cancelled, Some(now - 6 * D)),
            job("d", JobStatus::Running, None),
            job("e", JobStatus::Queued, None),
            JobFacts {
                created_at: 0,
                ..job("f", JobStatus::Assigned, None)
            },
        ];
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &rules(), &LastSweep::default(), &mut p, &jobs);
        assert_eq!(
            v,
            [
                Verdict::Collect(Collect::Expired),
                Verdict::Collect(Collect::Expired),
                Verdict::Keep(Keep::Young),
                Verdict::Keep(Keep::Unfinished),
                Verdict::Keep(Keep::Unfinished),
                Verdict::Keep(Keep::Unfinished),
            ]
        );
        assert_eq!((p.user_seen, p.user_kept, p.jobs_kept), (3, 1, 4));
    }

    #[test]
    fn referenced_jobs_and_jobs_of_live_idempotency_keys_stay_however_old() {
        let now = 30 * D;
        let old = Some(now - 20 * D);
        let referenced = JobFacts {
            referenced: true,
            ..job("a", JobStatus::Failed, old)
        };
        let keyed_live = JobFacts {
            has_idempotency_key: true,
            created_at: now - H,
            ..job("b", JobStatus::Succeeded, old)
        };
        let keyed_expired = JobFacts {
            has_idempotency_key: true,
            created_at: now - 25 * H,
            ..job("c", JobStatus::Succeeded, old)
        };
        let mut p = fresh_sweep();
        let last = LastSweep {
            user_kept: Some(1_000_000),
            targets: None,
        };
        let mut r = rules();
        r.count = 1;
        let v = decide_jobs(
            now,
            &r,
            &last,
            &mut p,
            &[referenced, keyed_live, keyed_expired],
        );
        assert_eq!(
            v,
            [
                Verdict::Keep(Keep::Referenced),
                Verdict::Keep(Keep::IdempotencyKeyLive),
                Verdict::Collect(Collect::Expired),
            ]
        );
    }

    #[test]
    fn the_count_rule_keeps_the_newest_and_never_fewer_than_the_count() {
        let now = 30 * D;
        let mut r = rules();
        r.count = 3;
        let page: Vec<JobFacts> = (0..5)
            .map(|i| job(&format!("j{i}"), JobStatus::Succeeded, Some(now - H + i)))
            .collect();
        // No complete sweep yet: nothing goes by count.
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &r, &LastSweep::default(), &mut p, &page);
        assert!(v.iter().all(|v| *v == Verdict::Keep(Keep::Young)), "{v:?}");
        assert_eq!(p.user_kept, 5);
        // The last sweep kept 5: the two oldest go, the three newest stay.
        let last = LastSweep {
            user_kept: Some(5),
            targets: None,
        };
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &r, &last, &mut p, &page);
        assert_eq!(
            v.iter()
                .filter(|v| **v == Verdict::Collect(Collect::OverCount))
                .count(),
            2
        );
        assert_eq!(v[2..], [Verdict::Keep(Keep::Young); 3]);
        // Unfinished jobs between them are neither counted nor collected.
        let mut mixed = page.clone();
        mixed.insert(1, job("q", JobStatus::Queued, None));
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &r, &last, &mut p, &mixed);
        assert_eq!(v[1], Verdict::Keep(Keep::Unfinished));
        assert_eq!(p.user_kept, 3);
        // A stale (lower) count from the last sweep deletes less, never more.
        let stale = LastSweep {
            user_kept: Some(4),
            targets: None,
        };
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &r, &stale, &mut p, &page);
        assert_eq!(
            v.iter()
                .filter(|v| matches!(v, Verdict::Collect(_)))
                .count(),
            1
        );
    }

    #[test]
    fn reconciler_jobs_keep_the_last_n_per_target() {
        let now = 30 * D;
        let mut r = rules();
        r.reconciler_keep = 2;
        let page: Vec<JobFacts> = (0..4)
            .flat_map(|i| {
                [
                    reconciler(&format!("w{i}"), "web", now - H + i),
                    reconciler(&format!("d{i}"), "db", now - H + i),
                ]
            })
            .collect();
        let last = LastSweep {
            user_kept: Some(0),
            targets: Some(BTreeMap::from([("web".into(), 4), ("db".into(), 2)])),
        };
        let mut p = fresh_sweep();
        let v = decide_jobs(now, &r, &last, &mut p, &page);
        let gone: Vec<&str> = page
            .iter()
            .zip(&v)
            .filter(|(_, v)| matches!(v, Verdict::Collect(_)))
            .map(|(j, _)| j.job_id.as_str())
            .collect();
        assert_eq!(gone, ["w0", "w1"]);
        let t = p.targets.unwrap();
        assert_eq!(t.kept["web"], 2);
        assert_eq!(t.kept["db"], 4);
        // A sweep resumed without per-target counts applies no per-target count.
        let mut resumed = Progress::default();
        let v = decide_jobs(now, &r, &last, &mut resumed, &page);
        assert!(v.iter().all(|v| matches!(v, Verdict::Keep(_))));
        // But a referenced reconciler job stays even when over the count.
        let mut p = fresh_sweep();
        let mut page2 = page.clone();
        page2[0].referenced = true;
        let v = decide_jobs(now, &r, &last, &mut p, &page2);
        assert_eq!(v[0], Verdict::Keep(Keep::Referenced));
    }

    #[test]
    fn a_tenants_quota_overrides_the_job_rules() {
        let cfg = RetentionConfig::default();
        let q = Quota {
            job_retention_secs: Some(60),
            job_retention_count: Some(5),
            ..Quota::default()
        };
        let r = cfg.for_tenant(&q);
        assert_eq!((r.retention_ms, r.count), (60_000, 5));
        let d = cfg.for_tenant(&Quota::default());
        assert_eq!(d.retention_ms, 7 * D);
        assert_eq!(d.count, DEFAULT_JOB_RETENTION_COUNT);
        let now = 10 * D;
        let mut p = fresh_sweep();
        let v = decide_jobs(
            now,
            &r,
            &LastSweep::default(),
            &mut p,
            &[job("a", JobStatus::Succeeded, Some(now - 61_000))],
        );
        assert_eq!(v, [Verdict::Collect(Collect::Expired)]);
    }

    #[test]
    fn idempotency_keys_live_for_their_window_only() {
        let w = DEFAULT_IDEMPOTENCY_WINDOW;
        assert!(idempotency_live(1000, 1000, w));
        assert!(idempotency_live(1000, 1000 + 24 * H - 1, w));
        assert!(!idempotency_live(1000, 1000 + 24 * H, w));
        assert!(!collect_idempotency_key(1000 + H, w, Some(1000)));
        assert!(collect_idempotency_key(1000 + 24 * H, w, Some(1000)));
        // A key whose job is gone names nothing.
        assert!(collect_idempotency_key(0, w, None));
    }

    #[test]
    fn only_dead_agents_with_empty_inboxes_go_after_their_retention() {
        let r = DEFAULT_DEAD_AGENT_RETENTION;
        let now = 30 * D;
        assert!(collect_agent(now, r, AgentState::Dead, now - 7 * D, true));
        assert!(!collect_agent(now, r, AgentState::Dead, now - 6 * D, true));
        assert!(!collect_agent(now, r, AgentState::Dead, now - 8 * D, false));
        assert!(!collect_agent(now, r, AgentState::Unreachable, 0, true));
        assert!(!collect_agent(now, r, AgentState::Online, 0, true));
    }

    #[test]
    fn a_jobs_paths_are_its_record_queue_entry_secrets_attempts_inbox_output_and_index_entries() {
        let j: Job = serde_json::from_value(serde_json::json!({
            "job_id": "j-1", "tenant": "acme", "command": {"shell": "true"},
            "timeout_secs": 1, "max_attempts": 1, "status": "succeeded",
            "created_at": 0, "updated_at": 0, "attempts": 1, "submitted_by": "u"
        }))
        .unwrap();
        let a: Attempt = serde_json::from_value(serde_json::json!({
            "attempt_id": "j-1.1", "job_id": "j-1", "number": 1, "agent": "a1",
            "state": "finished", "assigned_at": 0, "start_deadline": 0
        }))
        .unwrap();
        let p = job_paths(&j, &[a]);
        assert_eq!(
            p.exact,
            [
                "jobs/j-1",
                "pending/j-1",
                "secrets/j-1",
                "attempts/j-1/0001",
                "inbox/a1/j-1.1",
                // Its listing index entries.
                "jobidx/kind/user/j-1",
                "jobidx/status/succeeded/user/j-1",
            ]
        );
        assert!(
            crate::jobs::index_keys(&j)
                .iter()
                .all(|k| p.exact.contains(k))
        );
        assert_eq!(p.prefixes, ["output/j-1."]);
    }

    #[test]
    fn the_settings_are_checked() {
        assert!(RetentionConfig::default().validate().is_ok());
        for bad in [
            RetentionConfig {
                batch: 0,
                ..RetentionConfig::default()
            },
            RetentionConfig {
                batch: MAX_GC_BATCH + 1,
                ..RetentionConfig::default()
            },
            RetentionConfig {
                interval: Duration::ZERO,
                ..RetentionConfig::default()
            },
            RetentionConfig {
                reconciler_keep: 0,
                ..RetentionConfig::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_run_of_deleting_pages_opens_the_backlog_and_a_frontier_or_idle_page_closes_it() {
        use PageSeen::*;
        // A run opens at its first deleting page and keeps that start.
        assert_eq!(behind_after(None, Deleting, 100, false), Some(100));
        assert_eq!(behind_after(Some(100), Deleting, 200, false), Some(100));
        // Unfinished jobs: unchanged, open or not.
        assert_eq!(behind_after(Some(100), Unfinished, 300, false), Some(100));
        assert_eq!(behind_after(None, Unfinished, 300, false), None);
        // Young jobs or the sweep's end, or finished jobs all kept for their own reasons.
        assert_eq!(behind_after(Some(100), Frontier, 400, false), None);
        assert_eq!(behind_after(Some(100), Idle, 400, false), None);
        // A new term restarts an open run, and opens none.
        assert_eq!(behind_after(Some(100), Deleting, 500, true), Some(500));
        assert_eq!(behind_after(Some(100), Unfinished, 500, true), Some(500));
        assert_eq!(behind_after(None, Unfinished, 500, true), None);
    }

    #[test]
    fn a_backlog_refuses_beyond_the_maximum_only() {
        let max = Some(Duration::from_secs(60));
        assert_eq!(backlog(None, 1_000_000, max), None);
        assert_eq!(backlog(Some(1_000), 61_000, max), None);
        let b = backlog(Some(1_000), 61_001, max).expect("refused");
        assert_eq!(b.lag, Duration::from_millis(60_001));
        assert!(b.to_string().contains("--gc-max-lag"), "{b}");
        assert_eq!(backlog(Some(0), u64::MAX, None), None);
        // A clock behind the record's: not behind.
        assert_eq!(lag(Some(5_000), 1_000), Duration::ZERO);
    }
}
