//! The schedule service: schedules stored with CAS (list, get, put, delete, pause, resume) and
//! `trigger`, one run now.
//!
//! Guarantees:
//! - every write of a schedule is a CAS on its version; `put` and `delete` answer
//!   PreconditionFailed when the caller's expected version is not the stored one, and a
//!   refused spec stores nothing;
//! - a trigger's jobs and its run in the status record are one transaction, conditional on
//!   the status record as read (so it never overwrites a firing, nor a firing it);
//! - listing reads one page of schedules and their status records: what it returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    MAX_LIST, MAX_RUNS, MAX_SCHEDULES, Run, ScheduleSpec, ScheduleStatus, StoredSchedule, What,
    trigger_group, validate_spec,
};
use crate::error::{delete_refused, expect_for_delete, write_refused};
use crate::jobs::{JobError, Jobs};
use crate::keys;
use crate::model::{JobKind, JobStatus, Millis, valid_ident};
use crate::rollout::RolloutError;
use crate::store::{DynStore, Expect, Key, Range, Txn, Version};

crate::error::spec_service_error! {
    /// Errors of the schedule service.
    ScheduleError,
    quota:
    /// A trigger's jobs would take the tenant past its `max_queued` quota; nothing was written.
}

pub type Result<T, E = ScheduleError> = std::result::Result<T, E>;

/// A run with the result of its jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunView {
    #[serde(flatten)]
    pub run: Run,
    /// `queued`, `running`, `succeeded`, `failed` (one job or more did not succeed), `error`
    /// (no job was started) or `unknown` (its jobs were collected).
    pub result: String,
}

/// A schedule with its version, next slots and last runs.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleView {
    pub name: String,
    pub version: Version,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub updated_by: String,
    pub spec: ScheduleSpec,
    /// The next five slots (Unix ms); empty while paused.
    pub next: Vec<Millis>,
    pub last_slot: Option<Millis>,
    pub queued_slot: Option<Millis>,
    pub fires: u64,
    pub missed: u64,
    pub skipped: u64,
    /// The last runs, newest first.
    pub runs: Vec<RunView>,
}

/// What a run started.
#[derive(Debug, Default)]
pub(super) struct Started {
    pub jobs: Vec<String>,
    pub rollout: Option<String>,
}

/// Attempts of a trigger racing with firings.
const TRIGGER_RETRIES: usize = 16;

/// Jobs read per view at most to tell runs' results.
const RESULT_READS: usize = 100;

/// The schedule service (and, in [`super::driver`], the leader's firing). Cheap to clone.
#[derive(Clone, Debug)]
pub struct Schedules {
    pub(super) store: DynStore,
    pub(super) jobs: Jobs,
    /// The node's `--min-schedule-interval`.
    min_interval_ms: Millis,
}

pub(super) fn dec<T: serde::de::DeserializeOwned>(k: &Key, bytes: &[u8]) -> Result<T> {
    crate::stored::decode(k, bytes, |key, reason| ScheduleError::Corrupt {
        key,
        reason,
    })
}

pub(super) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("schedule types always serialize")
}

fn shown(name: &str) -> String {
    crate::state::shown(name)
}

impl Schedules {
    pub fn new(store: DynStore, jobs: Jobs, min_interval_ms: Millis) -> Schedules {
        Schedules {
            store,
            jobs,
            min_interval_ms,
        }
    }

    pub fn min_interval_ms(&self) -> Millis {
        self.min_interval_ms
    }

    /// Checks a spec against every rule (see [`validate_spec`]).
    pub fn validate(&self, spec: &ScheduleSpec) -> Result<super::CronSchedule> {
        validate_spec(spec, self.min_interval_ms)
            .map_err(|e| ScheduleError::Invalid(format!("schedule {}: {e}", shown(&spec.name))))
    }

    /// The parsed expression of a stored schedule, for firing it and showing its next slots.
    /// Only the expression and the zone are read: the other rules (the cluster's
    /// `--min-schedule-interval` among them) are judged when a schedule is written, so a
    /// stored schedule keeps firing on a leader started with other settings, and a pass does
    /// not sample every expression again.
    pub fn parsed(&self, spec: &ScheduleSpec) -> Result<super::CronSchedule> {
        super::CronSchedule::parse(&spec.cron, &spec.tz)
            .map_err(|e| ScheduleError::Invalid(format!("schedule {}: {e}", shown(&spec.name))))
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<(StoredSchedule, Version)> {
        if !valid_ident(name) {
            return Err(ScheduleError::NotFound(format!("schedule {}", shown(name))));
        }
        let k = Key::new(tenant, keys::schedule(name))?;
        match self.store.get(&k).await? {
            Some(v) => Ok((dec(&k, &v.value)?, v.version)),
            None => Err(ScheduleError::NotFound(format!("schedule {name}"))),
        }
    }

    pub(super) async fn load_status(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<(ScheduleStatus, Option<Version>)> {
        let k = Key::new(tenant, keys::schedule_status(name))?;
        Ok(match self.store.get(&k).await? {
            Some(v) => (dec(&k, &v.value)?, Some(v.version)),
            None => (ScheduleStatus::default(), None),
        })
    }

    /// Every schedule of a tenant, by name, with its version (for applies).
    pub async fn stored(
        &self,
        tenant: &str,
    ) -> Result<BTreeMap<String, (StoredSchedule, Version)>> {
        let schedules =
            crate::stored::list(self.store.as_ref(), tenant, keys::SCHEDULES, dec).await?;
        Ok(crate::stored::by_name(schedules, |s: &StoredSchedule| {
            &s.spec.name
        }))
    }

    /// The record to store for `spec`, given what is stored (`current`): `created_at` kept,
    /// `active_since` moved to `now` when the schedule is new, resumed, or fires by another
    /// expression or zone.
    pub fn record(
        by: &str,
        spec: ScheduleSpec,
        current: Option<&StoredSchedule>,
        now: Millis,
    ) -> StoredSchedule {
        let (created_at, active_since) = match current {
            None => (now, now),
            Some(c) => {
                let restart = c.spec.cron != spec.cron
                    || c.spec.tz != spec.tz
                    || (c.spec.paused && !spec.paused);
                (c.created_at, if restart { now } else { c.active_since })
            }
        };
        StoredSchedule {
            spec,
            created_at,
            updated_at: now,
            updated_by: by.to_string(),
            active_since,
        }
    }

    /// Creates or replaces one schedule. `expect` is the version the caller last saw (`Absent`
    /// to create only, `Any` to overwrite whatever is there). Returns the new version and
    /// whether it was created.
    pub async fn put(
        &self,
        tenant: &str,
        by: &str,
        spec: ScheduleSpec,
        expect: Expect,
        now: Millis,
    ) -> Result<(Version, bool)> {
        self.validate(&spec)?;
        let k = Key::new(tenant, keys::schedule(&spec.name))?;
        let current = match self.store.get(&k).await? {
            Some(v) => Some((dec::<StoredSchedule>(&k, &v.value)?, v.version)),
            None => None,
        };
        let cas = match (&current, expect) {
            (Some((_, v)), Expect::Any) => Expect::Version(*v),
            (None, Expect::Any) => Expect::Absent,
            (_, e) => e,
        };
        let mut spec = spec;
        let stored_secrets = match &current {
            Some(_) => super::secrets::load(&self.store, tenant, &spec.name).await?,
            None => BTreeMap::new(),
        };
        let secret_values = super::secrets::seal(&mut spec, &stored_secrets, true)
            .map_err(|m| ScheduleError::Invalid(format!("schedule {}: {m}", shown(&spec.name))))?;
        if let Some((cur, v)) = &current
            && cas.admits(Some(*v))
            && cur.spec == spec
        {
            return Ok((*v, false));
        }
        if current.is_none() {
            // A bounded read: at most the cap's number of entries.
            let range = Range::first(keys::SCHEDULES, MAX_SCHEDULES);
            if self.store.list_range(tenant, &range).await?.len() >= MAX_SCHEDULES {
                return Err(ScheduleError::Invalid(format!(
                    "schedules: tenant {tenant} has {MAX_SCHEDULES} schedules, the most a tenant may have; delete one first"
                )));
            }
        }
        let name = spec.name.clone();
        let stored = Self::record(by, spec, current.as_ref().map(|(s, _)| s), now);
        let txn = super::secrets::write(
            Txn::new().put(k, enc(&stored), cas),
            tenant,
            &name,
            &secret_values,
        )?;
        self.store
            .commit(txn)
            .await
            .map(|v| (v, current.is_none()))
            .map_err(|e| write_refused("schedule", &name, expect, e))
    }

    /// Pauses or resumes a schedule (CAS on the version read; a resumed schedule does not
    /// catch up the slots of its pause). Returns the new version.
    pub async fn set_paused(
        &self,
        tenant: &str,
        by: &str,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<Version> {
        let (s, v) = self.load(tenant, name).await?;
        let mut spec = s.spec;
        spec.paused = paused;
        Ok(self.put(tenant, by, spec, Expect::Version(v), now).await?.0)
    }

    /// Deletes a schedule and its status record (its jobs stay, as any job does).
    pub async fn delete(&self, tenant: &str, name: &str, expect: Expect) -> Result<Version> {
        let (_, v) = self.load(tenant, name).await?;
        expect_for_delete::<ScheduleError>("schedule", name, expect, v)?;
        let txn = Txn::new()
            .delete(Key::new(tenant, keys::schedule(name))?, Expect::Version(v))
            .delete(Key::new(tenant, keys::schedule_status(name))?, Expect::Any)
            .delete(Key::new(tenant, keys::schedule_secrets(name))?, Expect::Any);
        self.store
            .commit(txn)
            .await
            .map(|_| v)
            .map_err(|e| delete_refused("schedule", name, e))
    }

    /// One schedule with its next slots and last runs.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<ScheduleView> {
        let (s, v) = self.load(tenant, name).await?;
        let (st, _) = self.load_status(tenant, name).await?;
        self.view(tenant, s, v, st, MAX_RUNS).await
    }

    /// One page of a tenant's schedules in name order, after `after`, with their last run.
    pub async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ScheduleView>> {
        let mut range = Range::first(keys::SCHEDULES, limit.clamp(1, MAX_LIST));
        if let Some(a) = after {
            range = range.after(keys::schedule(a));
        }
        let mut out = Vec::new();
        for e in self.store.list_range(tenant, &range).await? {
            let s: StoredSchedule = dec(&e.key, &e.value)?;
            let (st, _) = self.load_status(tenant, &s.spec.name).await?;
            out.push(self.view(tenant, s, e.version, st, 1).await?);
        }
        Ok(out)
    }

    async fn view(
        &self,
        tenant: &str,
        s: StoredSchedule,
        version: Version,
        st: ScheduleStatus,
        runs: usize,
    ) -> Result<ScheduleView> {
        let next = match (s.spec.paused, self.parsed(&s.spec)) {
            (false, Ok(c)) => {
                let from = crate::model::now_ms().max(st.cursor.last_slot.unwrap_or(0));
                c.next_n(from.max(s.active_since), 5)
            }
            _ => vec![],
        };
        let mut reads = RESULT_READS;
        let mut views = Vec::new();
        for run in st.runs.iter().rev().take(runs) {
            let result = self.result(tenant, run, &mut reads).await?;
            views.push(RunView {
                run: run.clone(),
                result,
            });
        }
        Ok(ScheduleView {
            name: s.spec.name.clone(),
            version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            updated_by: s.updated_by,
            spec: s.spec,
            next,
            last_slot: st.cursor.last_slot,
            queued_slot: st.cursor.queued,
            fires: st.fires,
            missed: st.missed,
            skipped: st.skipped,
            runs: views,
        })
    }

    /// The statuses of a run's jobs (`None` for a job no longer stored), at most `*budget`
    /// reads in all.
    pub(super) async fn job_statuses(
        &self,
        tenant: &str,
        run: &Run,
        budget: &mut usize,
    ) -> Result<Option<Vec<Option<JobStatus>>>> {
        if run.jobs.len() > *budget {
            return Ok(None);
        }
        *budget -= run.jobs.len();
        let mut out = Vec::with_capacity(run.jobs.len());
        for id in &run.jobs {
            match self.jobs.get(tenant, id).await {
                Ok(j) => out.push(Some(j.status)),
                Err(JobError::NotFound(_)) => out.push(None),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Some(out))
    }

    /// The status of a run's rollout (`None`: the run started none, or it is no longer
    /// stored).
    pub(super) async fn rollout_status(
        &self,
        tenant: &str,
        run: &Run,
    ) -> Result<Option<crate::rollout::RolloutStatus>> {
        let Some(id) = &run.rollout else {
            return Ok(None);
        };
        let rollouts = crate::rollout::Rollouts::new(self.store.clone(), self.jobs.clone());
        match rollouts.load(tenant, id).await {
            Ok((r, _)) => Ok(Some(r.status)),
            Err(RolloutError::NotFound(_)) => Ok(None),
            Err(RolloutError::Store(e)) => Err(e.into()),
            Err(e) => Err(ScheduleError::Corrupt {
                key: format!("rollout {id}"),
                reason: e.to_string(),
            }),
        }
    }

    async fn result(&self, tenant: &str, run: &Run, budget: &mut usize) -> Result<String> {
        if run.skipped {
            return Ok("skipped".into());
        }
        if run.error.is_some() {
            return Ok("error".into());
        }
        if run.rollout.is_some() {
            return Ok(match self.rollout_status(tenant, run).await? {
                Some(st) => st.as_str().into(),
                None => "unknown".into(),
            });
        }
        let Some(statuses) = self.job_statuses(tenant, run, budget).await? else {
            return Ok("unknown".into());
        };
        Ok(summarize(&statuses).into())
    }

    /// What a run of `spec` starts, and the writes that start it, uncommitted: its jobs
    /// (targets resolved by [`Jobs::prepare_run`], as an ad-hoc run's) or its rollout (by
    /// [`crate::rollout::Rollouts::prepare_create`]). `Ok(Err(why))`: nothing can start now
    /// (no agent matches, say).
    pub(super) async fn prepare_start(
        &self,
        tenant: &str,
        by: &str,
        spec: &ScheduleSpec,
        now: Millis,
        group: &str,
    ) -> Result<std::result::Result<(Started, Txn), String>> {
        match &spec.what {
            What::Job(j) => {
                let mut submission = j.submission();
                if !j.secret_env.is_empty() {
                    let values = super::secrets::load(&self.store, tenant, &spec.name).await?;
                    submission.secret_env.clear();
                    for var in j.secret_env.keys() {
                        let Some(v) = values.get(var) else {
                            return Ok(Err(format!(
                                "secret_env: the value of {var} is not stored"
                            )));
                        };
                        submission.secret_env.insert(var.clone(), v.clone());
                    }
                }
                self.start_jobs(tenant, by, &submission, now, group).await
            }
            What::Rollout(r) => {
                let rollouts = crate::rollout::Rollouts::new(self.store.clone(), self.jobs.clone());
                match rollouts
                    .prepare_create(tenant, by, r.clone(), now, group)
                    .await
                {
                    Ok((r, txn)) => Ok(Ok((
                        Started {
                            jobs: Vec::new(),
                            rollout: Some(r.rollout_id),
                        },
                        txn,
                    ))),
                    Err(RolloutError::Invalid(m)) => Ok(Err(m)),
                    Err(RolloutError::Store(e)) => Err(e.into()),
                    Err(RolloutError::Jobs(e)) => Err(e.into()),
                    Err(e) => Err(ScheduleError::Invalid(e.to_string())),
                }
            }
        }
    }

    async fn start_jobs(
        &self,
        tenant: &str,
        by: &str,
        submission: &crate::model::SubmitJob,
        now: Millis,
        group: &str,
    ) -> Result<std::result::Result<(Started, Txn), String>> {
        match self
            .jobs
            .prepare_run(tenant, by, submission, now, JobKind::Schedule, group)
            .await
        {
            Ok((jobs, txn)) => Ok(Ok((
                Started {
                    jobs: jobs.into_iter().map(|j| j.job_id).collect(),
                    rollout: None,
                },
                txn,
            ))),
            Err(JobError::Invalid(m)) => Ok(Err(m)),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts one run now, outside the schedule's slots (paused or not): its jobs and its run
    /// record in one transaction. A trigger is a user's submission: its jobs are admitted by
    /// the tenant's `max_queued` and, given `rates`, its `submit_per_sec` (the tokens are taken
    /// once, not again when the commit is retried after a conflict).
    pub async fn trigger(
        &self,
        tenant: &str,
        by: &str,
        name: &str,
        now: Millis,
        mut rates: Option<&crate::quota::RateLimiter>,
    ) -> Result<Run> {
        let (s, v) = self.load(tenant, name).await?;
        for _ in 0..TRIGGER_RETRIES {
            let (mut st, sv) = self.load_status(tenant, name).await?;
            let group = trigger_group(name);
            let (started, txn) = self
                .prepare_start(tenant, by, &s.spec, now, &group)
                .await?
                .map_err(ScheduleError::Invalid)?;
            if let Some(refusal) = self.over_quota(tenant, &started, rates.take()).await? {
                return Err(ScheduleError::Quota(refusal));
            }
            let run = Run {
                slot: None,
                fired_at: now,
                group,
                jobs: started.jobs,
                rollout: started.rollout,
                error: None,
                skipped: false,
                by: by.to_string(),
            };
            st.push_run(run.clone());
            let mut txn = txn;
            let fired = crate::events::kinds::schedule_fired(
                name,
                None,
                &run.jobs,
                run.rollout.as_deref(),
                None,
                now,
            );
            crate::events::record(&mut txn, tenant, &fired)?;
            let txn = txn
                .check(Key::new(tenant, keys::schedule(name))?, Expect::Version(v))
                .put(
                    Key::new(tenant, keys::schedule_status(name))?,
                    enc(&st),
                    sv.map_or(Expect::Absent, Expect::Version),
                );
            if crate::store::landed(self.store.commit(txn).await)? {
                return Ok(run);
            }
        }
        Err(ScheduleError::Conflict(format!(
            "schedule {name} is firing right now; retry"
        )))
    }
}

/// The result of a run from its jobs' statuses (`None`: a job no longer stored).
pub fn summarize(statuses: &[Option<JobStatus>]) -> &'static str {
    if statuses.iter().any(Option::is_none) {
        return "unknown";
    }
    let st: Vec<JobStatus> = statuses.iter().flatten().copied().collect();
    if st.iter().all(|s| *s == JobStatus::Queued) && !st.is_empty() {
        "queued"
    } else if st.iter().any(|s| !s.is_terminal()) {
        "running"
    } else if st.iter().all(|s| *s == JobStatus::Succeeded) {
        "succeeded"
    } else {
        "failed"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_summarizes_its_jobs() {
        use JobStatus::*;
        assert_eq!(summarize(&[Some(Queued), Some(Queued)]), "queued");
        assert_eq!(summarize(&[Some(Queued), Some(Running)]), "running");
        assert_eq!(summarize(&[Some(Succeeded), Some(Running)]), "running");
        assert_eq!(summarize(&[Some(Succeeded), Some(Succeeded)]), "succeeded");
        assert_eq!(summarize(&[Some(Succeeded), Some(TimedOut)]), "failed");
        assert_eq!(summarize(&[Some(Succeeded), None]), "unknown");
    }
}
