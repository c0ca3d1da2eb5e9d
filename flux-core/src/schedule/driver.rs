//! The leader's firing of schedules: [`Schedules::pass`] reads a tenant's schedules and their
//! status records, asks the pure [`super::policy::decide`] what to do for each, and commits
//! each step as one transaction.
//!
//! Guarantees:
//! - a step is one transaction, fenced by the leader's epoch, conditional on the schedule's
//!   version (a schedule changed or deleted meanwhile gets no run from a stale read) and on its
//!   status record's version (two leaders, or a leader and a trigger, cannot both take a
//!   slot); it writes the slot's jobs and the status record that says the slot was fired
//!   together, so a leader killed or paused at any instant causes neither a missed nor a
//!   double run: its successor continues from the record;
//! - targets are resolved at fire time by the code of an ad-hoc run
//!   ([`crate::jobs::Jobs::prepare_run`]); a slot whose targets cannot be resolved (no agent
//!   matches) is recorded as fired with the error, and not retried;
//! - work per pass is bounded: [`MAX_STEPS_PER_SCHEDULE`] steps per schedule.

use super::policy::{self, Decision, Overlap, Settings};
use super::service::{Result, ScheduleError, enc};
use super::{Run, ScheduleStatus, Schedules, StoredSchedule, slot_group};
use crate::events::kinds as ev;
use crate::keys;
use crate::model::Millis;
use crate::store::{Epoch, Expect, Key, StoreError, Txn, Version};

/// Steps one schedule may take in one pass (each a transaction).
pub const MAX_STEPS_PER_SCHEDULE: usize = 64;

/// Who a slot's jobs are submitted by.
pub fn submitter(name: &str) -> String {
    format!("schedule/{name}")
}

/// What one pass over a tenant did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PassTally {
    /// Slots fired, with the delay of each from its due instant (ms).
    pub fired_lags_ms: Vec<Millis>,
    pub missed: u64,
    pub skipped: u64,
    /// The soonest instant a schedule of the tenant is due next.
    pub next_due: Option<Millis>,
    /// Steps that lost a race (the next pass re-reads).
    pub conflicts: u64,
    /// A schedule may need a step before `next_due`: a queued slot waits for a run to end, a
    /// schedule used up its steps, or a firing failed.
    pub unsettled: bool,
}

/// When a tenant next needs a firing pass, from its last pass: the leader's loop reads a
/// tenant's schedules and status records only then (or when its schedules change), not on
/// every tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextPass {
    /// On every tick (something may change before any slot is due).
    EveryTick,
    /// At this instant, the soonest due slot of its schedules.
    At(Millis),
    /// Only after a change to its schedules (none fires again, or all are paused).
    OnChange,
}

impl NextPass {
    /// What a pass that returned `t` leaves. Pure.
    pub fn after(t: &PassTally) -> NextPass {
        if t.unsettled || t.conflicts > 0 {
            return NextPass::EveryTick;
        }
        t.next_due.map_or(NextPass::OnChange, NextPass::At)
    }

    /// Whether the pass is due at `now`.
    pub fn due(self, now: Millis) -> bool {
        match self {
            NextPass::EveryTick => true,
            NextPass::At(d) => now >= d,
            NextPass::OnChange => false,
        }
    }
}

impl Schedules {
    /// Whether a kept run of `st` has a job that is not finished. Runs are read newest first,
    /// down to the newest slot run that is finished: a slot fires (under `skip` or `queue`)
    /// only once every earlier run has finished, and a finished job stays finished, so nothing
    /// older can still run. A triggered run, or one that started no job, does not end the walk:
    /// a long run before it may still be going.
    async fn unfinished(&self, tenant: &str, st: &ScheduleStatus) -> Result<bool> {
        let mut budget = usize::MAX;
        for run in st.runs.iter().rev() {
            let statuses = self
                .job_statuses(tenant, run, &mut budget)
                .await?
                .unwrap_or_default();
            if statuses.iter().any(|s| s.is_some_and(|s| !s.is_terminal())) {
                return Ok(true);
            }
            // An unfinished rollout is an unfinished run.
            if self
                .rollout_status(tenant, run)
                .await?
                .is_some_and(|s| !s.is_finished())
            {
                return Ok(true);
            }
            if run.slot.is_some() && (!run.jobs.is_empty() || run.rollout.is_some()) {
                return Ok(false);
            }
        }
        Ok(false)
    }

    /// Why the jobs of a run may not start: they would take the tenant past its `max_queued`
    /// quota, or, given `rates` (a user's trigger, not the leader's firing), past its
    /// `submit_per_sec` (the tokens are taken when admitted). `None`: admitted, or no such
    /// quota. A rollout starts its jobs as it goes and is not judged here.
    pub(super) async fn over_quota(
        &self,
        tenant: &str,
        started: &super::service::Started,
        rates: Option<&crate::quota::RateLimiter>,
    ) -> Result<Option<crate::quota::Refusal>> {
        if started.jobs.is_empty() {
            return Ok(None);
        }
        let q = crate::quota::read(self.store.as_ref(), tenant, |key, reason| {
            ScheduleError::Corrupt { key, reason }
        })
        .await?;
        let queued = self.jobs.queued_under(tenant, &q).await?;
        let n = started.jobs.len() as u64;
        Ok(match rates {
            Some(r) => crate::quota::admit(r, tenant, &q, queued, n, std::time::Instant::now()),
            None => crate::quota::admit_queued(tenant, &q, queued, n),
        }
        .err())
    }

    /// One firing pass over a tenant's schedules at `now`, fenced by `epoch`.
    pub async fn pass(&self, tenant: &str, epoch: Epoch, now: Millis) -> Result<PassTally> {
        let mut tally = PassTally::default();
        let mut statuses: std::collections::BTreeMap<String, (ScheduleStatus, Version)> = self
            .store
            .list(tenant, keys::SCHEDULE_STATUS)
            .await?
            .into_iter()
            .filter_map(|e| {
                let name = e
                    .key
                    .path()
                    .strip_prefix(keys::SCHEDULE_STATUS)?
                    .to_string();
                let st = super::service::dec(&e.key, &e.value).ok()?;
                Some((name, (st, e.version)))
            })
            .collect();
        for e in self.store.list(tenant, keys::SCHEDULES).await? {
            let s: StoredSchedule = match super::service::dec(&e.key, &e.value) {
                Ok(s) => s,
                Err(err) => {
                    tracing::warn!(tenant, error = %err, "unreadable schedule skipped");
                    continue;
                }
            };
            if s.spec.paused {
                continue;
            }
            let name = s.spec.name.clone();
            let (st, sv) = match statuses.remove(&name) {
                Some((st, v)) => (st, Some(v)),
                None => (ScheduleStatus::default(), None),
            };
            match self
                .fire_schedule(tenant, epoch, now, &s, e.version, st, sv, &mut tally)
                .await
            {
                Ok(()) => {}
                Err(err @ ScheduleError::Store(StoreError::Fenced { .. })) => return Err(err),
                Err(err) => {
                    tally.unsettled = true;
                    tracing::warn!(tenant, schedule = %name, error = %err, "schedule firing failed")
                }
            }
        }
        Ok(tally)
    }

    /// Fires schedule `s` through its due slots at `now`, each step one fenced transaction.
    #[allow(clippy::too_many_arguments)]
    async fn fire_schedule(
        &self,
        tenant: &str,
        epoch: Epoch,
        now: Millis,
        s: &StoredSchedule,
        version: Version,
        mut st: ScheduleStatus,
        mut sv: Option<Version>,
        tally: &mut PassTally,
    ) -> Result<()> {
        let name = &s.spec.name;
        let cron = self.parsed(&s.spec)?;
        let settings = settings_of(tenant, s);
        let watch_runs = s.spec.overlap != Overlap::Allow || st.cursor.queued.is_some();
        let mut running = watch_runs && self.unfinished(tenant, &st).await?;
        for _ in 0..MAX_STEPS_PER_SCHEDULE {
            let step =
                match policy::decide(&settings, st.cursor, running, now, |t| cron.next_fire(t)) {
                    Decision::Wait { until } => {
                        note_wait(tally, &st, until);
                        return Ok(());
                    }
                    Decision::Advance(step) => step,
                };
            let mut next = st.clone();
            next.cursor = step.cursor;
            next.missed += step.missed;
            next.skipped += step.skipped;
            let mut txn = Txn::new().fenced(epoch).check(
                Key::new(tenant, keys::schedule(name))?,
                Expect::Version(version),
            );
            record_given_up(&mut txn, tenant, name, &step, now)?;
            // A slot skipped by the quota is a skip in the metrics, as in its record.
            let (fired_jobs, quota_skipped) = match step.fire {
                Some(slot) => {
                    self.fire_slot(tenant, s, now, slot, &mut txn, &mut next)
                        .await?
                }
                None => (false, 0),
            };
            txn = txn.put(
                Key::new(tenant, keys::schedule_status(name))?,
                enc(&next),
                sv.map_or(Expect::Absent, Expect::Version),
            );
            match self.store.commit(txn).await {
                Ok(rev) => {
                    sv = Some(rev);
                    st = next;
                    if step.fire.is_some() {
                        if quota_skipped == 0 {
                            tally.fired_lags_ms.push(step.lag_ms);
                        }
                        running = fired_jobs;
                    }
                    tally.missed += step.missed;
                    tally.skipped += step.skipped + quota_skipped;
                }
                Err(StoreError::Conflict { .. }) => {
                    tally.conflicts += 1;
                    return Ok(());
                }
                Err(e) => return Err(e.into()),
            }
        }
        // Out of steps with slots left: the next pass goes on.
        tally.unsettled = true;
        Ok(())
    }

    /// Adds the run of `slot` and its event to `txn` and `next`: (started work, quota skips).
    async fn fire_slot(
        &self,
        tenant: &str,
        s: &StoredSchedule,
        now: Millis,
        slot: Millis,
        txn: &mut Txn,
        next: &mut ScheduleStatus,
    ) -> Result<(bool, u64)> {
        let name = &s.spec.name;
        let mut fired_jobs = false;
        let mut quota_skipped = 0;
        let group = slot_group(name, slot);
        let mut run = Run {
            slot: Some(slot),
            fired_at: now,
            group: group.clone(),
            jobs: vec![],
            rollout: None,
            error: None,
            skipped: false,
            by: "leader".into(),
        };
        match self
            .prepare_start(tenant, &submitter(name), &s.spec, now, &group)
            .await?
        {
            Ok((started, part)) => match self.over_quota(tenant, &started, None).await? {
                // Past the tenant's max_queued: the slot is skipped, with the reason,
                // and not retried (the next slot is judged afresh).
                Some(why) => {
                    run.error = Some(format!("skipped by the max_queued quota: {why}"));
                    run.skipped = true;
                }
                None => {
                    fired_jobs = !started.jobs.is_empty() || started.rollout.is_some();
                    run.jobs = started.jobs;
                    run.rollout = started.rollout;
                    txn.ops.extend(part.ops);
                }
            },
            Err(m) => run.error = Some(m),
        }
        let event = if run.skipped {
            next.skipped += 1;
            quota_skipped = 1;
            ev::schedule_skipped(name, 1, "quota", now)
        } else {
            next.fires += 1;
            ev::schedule_fired(
                name,
                Some(slot),
                &run.jobs,
                run.rollout.as_deref(),
                run.error.as_deref(),
                now,
            )
        };
        crate::events::record(txn, tenant, &event)?;
        next.push_run(run);
        Ok((fired_jobs, quota_skipped))
    }
}

/// The firing policy's settings for schedule `s` of `tenant`.
fn settings_of(tenant: &str, s: &StoredSchedule) -> Settings {
    Settings {
        overlap: s.spec.overlap,
        missed: s.spec.missed,
        grace_ms: s.spec.grace_secs * 1000,
        jitter_ms: s.spec.jitter_secs * 1000,
        seed: policy::seed(tenant, &s.spec.name),
        active_since: s.active_since,
    }
}

/// Notes in `tally` a schedule that waits (until `until`, or, queued, for a run to end).
fn note_wait(tally: &mut PassTally, st: &ScheduleStatus, until: Option<Millis>) {
    // A queued slot fires when the run before it ends, not at a time.
    tally.unsettled |= st.cursor.queued.is_some();
    if let Some(u) = until {
        tally.next_due = Some(tally.next_due.map_or(u, |n: Millis| n.min(u)));
    }
}

/// Adds to `txn` the events of the slots `step` gives up (missed, and skipped by overlap).
fn record_given_up(
    txn: &mut Txn,
    tenant: &str,
    name: &str,
    step: &policy::Step,
    now: Millis,
) -> Result<()> {
    if step.missed > 0 {
        crate::events::record(txn, tenant, &ev::schedule_missed(name, step.missed, now))?;
    }
    if step.skipped > 0 {
        crate::events::record(
            txn,
            tenant,
            &ev::schedule_skipped(name, step.skipped, "overlap", now),
        )?;
    }
    Ok(())
}

/// Longest a tenant goes without a firing pass when nothing says it needs one.
pub const FULL_PASS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// Longest the firing loop waits between passes when no slot is due sooner.
pub const SCHEDULE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// The leader's firing loop: a pass over every tenant when the soonest slot is due, on every
/// [`SCHEDULE_TICK`], and whenever a schedule changes. Returns only when a write is fenced,
/// with the epoch in force.
pub async fn work(l: &crate::leader::Leader<'_>, epoch: Epoch) -> Epoch {
    let Some(schedules) = l.schedules else {
        return std::future::pending().await;
    };
    let mut changes = l.store.subscribe();
    // Per tenant, when its next pass is due (absent: now). Forgotten every FULL_PASS_EVERY, so
    // that a change notification lost on the way delays a pass by that much at most.
    let mut idle: std::collections::HashMap<String, NextPass> = Default::default();
    let mut full_pass = tokio::time::Instant::now();
    loop {
        if full_pass.elapsed() >= FULL_PASS_EVERY {
            idle.clear();
            full_pass = tokio::time::Instant::now();
        }
        let mut next_due: Option<Millis> = None;
        match pass_all(l, schedules, epoch, &mut next_due, &mut idle).await {
            Ok(()) => {}
            Err(StoreError::Fenced { current, .. }) => return current,
            Err(e) => tracing::warn!(error = %e, "schedule pass failed; retrying"),
        }
        let now = crate::model::now_ms();
        let wait = next_due.map_or(SCHEDULE_TICK, |d| {
            std::time::Duration::from_millis(d.saturating_sub(now)).min(SCHEDULE_TICK)
        });
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = &mut sleep => break,
                c = changes.recv() => match c {
                    Ok(c) if !c.is_resync() && !c.paths.iter().any(|p| p.starts_with(keys::SCHEDULES)) => continue,
                    Ok(c) if !c.is_resync() => {
                        idle.remove(&c.tenant);
                        break;
                    }
                    _ => {
                        idle.clear();
                        break;
                    }
                },
            }
        }
    }
}

/// One pass over every tenant's schedules; `next_due` gets the soonest due instant.
async fn pass_all(
    l: &crate::leader::Leader<'_>,
    schedules: &Schedules,
    epoch: Epoch,
    next_due: &mut Option<Millis>,
    idle: &mut std::collections::HashMap<String, NextPass>,
) -> std::result::Result<(), StoreError> {
    let mut fold = |d: Millis| *next_due = Some(next_due.map_or(d, |n: Millis| n.min(d)));
    for t in &l
        .jobs
        .tenants()
        .await
        .map_err(crate::leader::job_to_store)?
    {
        let now = crate::model::now_ms();
        match idle.get(t) {
            Some(n) if !n.due(now) => {
                if let NextPass::At(d) = n {
                    fold(*d);
                }
                continue;
            }
            _ => {}
        }
        let tally = match schedules.pass(t, epoch, now).await {
            Ok(tally) => tally,
            Err(ScheduleError::Store(e @ StoreError::Fenced { .. })) => return Err(e),
            Err(e) => {
                idle.remove(t);
                tracing::warn!(tenant = %t, error = %e, "schedule pass of a tenant failed");
                continue;
            }
        };
        idle.insert(t.clone(), NextPass::after(&tally));
        if let Some(d) = tally.next_due {
            fold(d);
        }
        for lag in &tally.fired_lags_ms {
            l.host
                .schedule_fired(t, std::time::Duration::from_millis(*lag));
        }
        l.host.tally(
            t,
            crate::leader::Tally::Schedule {
                fired: tally.fired_lags_ms.len() as u64,
                missed: tally.missed,
                skipped: tally.skipped,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{Jobs, JobsConfig};
    use crate::model::JobKind;
    use crate::schedule::{JobSpec, ScheduleSpec, What, parse_slot_group};

    /// The schedule service over a fresh redb store (kept alive by the returned guard).
    async fn setup() -> (tempfile::TempDir, Schedules, crate::store::DynStore) {
        let (dir, store) = crate::testing::temp_redb().await;
        let jobs = Jobs::new(store.clone(), JobsConfig::default());
        (dir, Schedules::new(store.clone(), jobs, 1000), store)
    }

    /// [`setup`] with tenant `t` under `quota` and the schedule of [`spec`] created at `t0`.
    async fn with_quota(
        quota: crate::quota::Quota,
        t0: Millis,
    ) -> (tempfile::TempDir, Schedules, crate::store::DynStore) {
        let (dir, s, store) = setup().await;
        crate::quota::put(store.as_ref(), "t", &quota, Expect::Any)
            .await
            .unwrap();
        s.put("t", "u", spec(), Expect::Absent, t0).await.unwrap();
        (dir, s, store)
    }

    fn spec() -> ScheduleSpec {
        let job = JobSpec {
            command: Some("true".into()),
            node_id: Some("a1".into()),
            allow_unknown_node: true,
            ..JobSpec::default()
        };
        crate::schedule::test_spec("tick", "* * * * * *", job)
    }

    /// Slot -> jobs of that slot, from the store's job records.
    async fn jobs_per_slot(
        store: &crate::store::DynStore,
    ) -> std::collections::BTreeMap<u64, usize> {
        let mut m = std::collections::BTreeMap::new();
        for e in store.list("t", keys::JOBS).await.unwrap() {
            let j: crate::model::Job = serde_json::from_slice(&e.value).unwrap();
            assert_eq!(j.kind, JobKind::Schedule);
            let (_, slot) = parse_slot_group(j.group.as_deref().unwrap()).unwrap();
            *m.entry(slot).or_default() += 1;
        }
        m
    }

    /// The slots that have jobs, in order.
    async fn slots_with_jobs(store: &crate::store::DynStore) -> Vec<u64> {
        jobs_per_slot(store).await.into_keys().collect()
    }

    #[tokio::test]
    async fn passes_fire_each_slot_once_and_a_stale_epoch_writes_nothing() {
        let (_dir, s, store) = setup().await;
        let t0 = 1_800_000_000_000;
        s.put("t", "u", spec(), Expect::Absent, t0).await.unwrap();
        let old = store.next_epoch().await.unwrap();
        // Three passes at the same instant, and two racing: slots 1..=3 fire once each.
        let tally = s.pass("t", old, t0 + 3_500).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 3);
        assert_eq!(tally.next_due, Some(t0 + 4_000));
        let (a, b) = tokio::join!(s.pass("t", old, t0 + 3_500), s.pass("t", old, t0 + 3_500));
        assert!(a.unwrap().fired_lags_ms.is_empty() && b.unwrap().fired_lags_ms.is_empty());
        let (a, b) = tokio::join!(s.pass("t", old, t0 + 5_100), s.pass("t", old, t0 + 5_100));
        let fired = a.unwrap().fired_lags_ms.len() + b.unwrap().fired_lags_ms.len();
        assert_eq!(
            fired, 2,
            "two racing passes fired slots 4 and 5 once in all"
        );
        let per = jobs_per_slot(&store).await;
        assert_eq!(per.len(), 5);
        assert!(per.values().all(|n| *n == 1), "{per:?}");
        // A new leader's epoch: the old one's pass is fenced and writes nothing.
        let new = store.next_epoch().await.unwrap();
        let e = s.pass("t", old, t0 + 8_000).await.unwrap_err();
        assert!(
            matches!(e, ScheduleError::Store(StoreError::Fenced { .. })),
            "{e}"
        );
        assert_eq!(jobs_per_slot(&store).await.len(), 5);
        // The new leader continues from the record: slots 6..=8, none again.
        let tally = s.pass("t", new, t0 + 8_000).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 3);
        let per = jobs_per_slot(&store).await;
        assert_eq!(
            per.keys().copied().collect::<Vec<_>>(),
            (1..=8).map(|i| t0 + i * 1000).collect::<Vec<_>>()
        );
        let v = s.get("t", "tick").await.unwrap();
        assert_eq!(v.fires, 8);
        assert_eq!(v.last_slot, Some(t0 + 8_000));
    }

    #[tokio::test]
    async fn a_changed_schedule_gets_no_run_from_a_stale_read_and_a_paused_one_none() {
        let (_dir, s, store) = setup().await;
        let t0 = 1_800_000_000_000;
        s.put("t", "u", spec(), Expect::Absent, t0).await.unwrap();
        let epoch = store.next_epoch().await.unwrap();
        s.set_paused("t", "u", "tick", true, t0).await.unwrap();
        let tally = s.pass("t", epoch, t0 + 5_000).await.unwrap();
        assert!(tally.fired_lags_ms.is_empty());
        // Resumed at t0 + 5 s: the slots of the pause do not fire.
        s.set_paused("t", "u", "tick", false, t0 + 5_000)
            .await
            .unwrap();
        let tally = s.pass("t", epoch, t0 + 6_200).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 1);
        assert_eq!(slots_with_jobs(&store).await, [t0 + 6_000]);
        // Deleted: no status, no more runs.
        s.delete("t", "tick", Expect::Any).await.unwrap();
        let tally = s.pass("t", epoch, t0 + 9_000).await.unwrap();
        assert!(tally.fired_lags_ms.is_empty());
        assert!(s.load_status("t", "tick").await.unwrap().1.is_none());
    }

    /// A triggered run that finished does not hide the slot run still going before it:
    /// `overlap = skip` skips the next slot.
    #[tokio::test]
    async fn skip_looks_past_a_finished_triggered_run_to_the_long_run_before_it() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let jobs = Jobs::new(store.clone(), JobsConfig::default());
        let s = Schedules::new(store.clone(), jobs.clone(), 1000);
        let t0 = 1_800_000_000_000;
        let mut sp = spec();
        sp.overlap = Overlap::Skip;
        s.put("t", "u", sp, Expect::Absent, t0).await.unwrap();
        let epoch = store.next_epoch().await.unwrap();
        // Slot 1 starts a job that stays unfinished (no agent takes it).
        let tally = s.pass("t", epoch, t0 + 1_100).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 1);
        // A trigger runs, and its job ends (cancelled) before the next slot.
        let run = s.trigger("t", "u", "tick", t0 + 1_200, None).await.unwrap();
        assert_eq!(run.jobs.len(), 1);
        jobs.cancel("t", &run.jobs[0], t0 + 1_300).await.unwrap();
        let tally = s.pass("t", epoch, t0 + 2_100).await.unwrap();
        assert!(tally.fired_lags_ms.is_empty(), "{tally:?}");
        assert_eq!(tally.skipped, 1, "{tally:?}");
        let mut slot_jobs = 0;
        for e in store.list("t", keys::JOBS).await.unwrap() {
            let j: crate::model::Job = serde_json::from_slice(&e.value).unwrap();
            slot_jobs += usize::from(j.group.as_deref().and_then(parse_slot_group).is_some());
        }
        assert_eq!(slot_jobs, 1, "only slot 1 started a job");
    }

    /// The rollouts stored, by id, with the slot whose run started each.
    async fn rollouts_of(s: &Schedules) -> Vec<(Option<u64>, crate::rollout::Rollout)> {
        let st = s.load_status("t", "tick").await.unwrap().0;
        let rollouts = crate::rollout::Rollouts::new(s.store.clone(), s.jobs.clone());
        let mut out = Vec::new();
        for run in &st.runs {
            if let Some(id) = &run.rollout {
                out.push((run.slot, rollouts.load("t", id).await.unwrap().0));
            }
        }
        out
    }

    /// A rollout schedule: each slot creates one rollout in its firing's transaction, an
    /// unfinished rollout makes `skip` skip, and a slot whose targets resolve to nothing is
    /// recorded with the error.
    #[tokio::test]
    async fn a_rollout_schedule_starts_one_rollout_per_slot_and_skip_waits_for_it() {
        let (_dir, s, store) = setup().await;
        let t0 = 1_800_000_000_000;
        let mut sp = spec();
        sp.overlap = Overlap::Skip;
        sp.what = What::Rollout(crate::rollout::RolloutSpec {
            command: Some("true".into()),
            nodes: vec!["a1".into(), "a2".into()],
            max_concurrency: Some(crate::rollout::LimitSpec::Count(2)),
            ..Default::default()
        });
        s.put("t", "u", sp.clone(), Expect::Absent, t0)
            .await
            .unwrap();
        let epoch = store.next_epoch().await.unwrap();
        let tally = s.pass("t", epoch, t0 + 1_100).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 1);
        let got = rollouts_of(&s).await;
        assert_eq!(got.len(), 1);
        let (slot, r) = &got[0];
        assert_eq!(*slot, Some(t0 + 1_000));
        assert_eq!(r.targets.len(), 2);
        assert_eq!(r.params.max_concurrency, 2);
        assert_eq!(r.created_by, "schedule/tick");
        assert_eq!(
            r.group.as_deref(),
            Some(slot_group("tick", t0 + 1_000).as_str())
        );
        // The rollout runs: the next slot is skipped, and the run's result is the rollout's.
        let tally = s.pass("t", epoch, t0 + 2_100).await.unwrap();
        assert!(tally.fired_lags_ms.is_empty(), "{tally:?}");
        assert_eq!(tally.skipped, 1);
        let v = s.get("t", "tick").await.unwrap();
        assert_eq!(v.runs[0].result, "running");
        assert_eq!(
            v.runs[0].run.rollout.as_deref(),
            Some(r.rollout_id.as_str())
        );
        // Finished, the next slot fires a second rollout.
        let k = crate::store::Key::new("t", keys::rollout(&r.rollout_id)).unwrap();
        let (mut done, ver) = crate::rollout::Rollouts::new(store.clone(), s.jobs.clone())
            .load("t", &r.rollout_id)
            .await
            .unwrap();
        done.status = crate::rollout::RolloutStatus::Succeeded;
        store
            .put(k, serde_json::to_vec(&done).unwrap(), Expect::Version(ver))
            .await
            .unwrap();
        assert_eq!(
            s.get("t", "tick").await.unwrap().runs[0].result,
            "succeeded"
        );
        let tally = s.pass("t", epoch, t0 + 3_100).await.unwrap();
        assert_eq!(tally.fired_lags_ms.len(), 1);
        let got = rollouts_of(&s).await;
        assert_eq!(
            got.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(),
            [Some(t0 + 1_000), Some(t0 + 3_000)]
        );
        // A stale leader's pass creates no rollout.
        let _new = store.next_epoch().await.unwrap();
        assert!(s.pass("t", epoch, t0 + 9_100).await.is_err());
        assert_eq!(store.list("t", keys::ROLLOUTS).await.unwrap().len(), 2);

        // Targets resolved at fire time: a selector that matches no agent is an error run.
        let mut none = sp;
        none.name = "empty".into();
        none.what = What::Rollout(crate::rollout::RolloutSpec {
            command: Some("true".into()),
            selector: crate::selector::Selector::parse("role=none").unwrap(),
            ..Default::default()
        });
        s.put("t", "u", none, Expect::Absent, t0 + 9_500)
            .await
            .unwrap();
        let epoch = store.current_epoch().await.unwrap();
        s.pass("t", epoch, t0 + 10_100).await.unwrap();
        let v = s.get("t", "empty").await.unwrap();
        assert_eq!(v.fires, 1);
        assert_eq!(v.runs[0].result, "error");
        assert!(
            v.runs[0].run.error.as_deref().unwrap().contains("no agent"),
            "{:?}",
            v.runs[0]
        );
    }

    /// A slot whose jobs would take the tenant past its max_queued is recorded as a skipped
    /// run with the reason, starts nothing, and is not retried; the next slot under the quota
    /// fires.
    #[tokio::test]
    async fn a_firing_over_the_queued_quota_is_a_skipped_run_with_the_reason() {
        let t0 = 1_800_000_000_000;
        let (_dir, s, store) = with_quota(
            crate::quota::Quota {
                max_queued: Some(1),
                ..Default::default()
            },
            t0,
        )
        .await;
        let epoch = store.next_epoch().await.unwrap();
        // Slot 1 queues a job (no agent takes it); slot 2 would be a second queued job.
        s.pass("t", epoch, t0 + 1_100).await.unwrap();
        let skipped = s.pass("t", epoch, t0 + 2_100).await.unwrap();
        // The metrics count it as a skip, not as a firing.
        assert_eq!((skipped.fired_lags_ms.len(), skipped.skipped), (0, 1));
        s.pass("t", epoch, t0 + 2_200).await.unwrap();
        assert_eq!(slots_with_jobs(&store).await, [t0 + 1_000]);
        let v = s.get("t", "tick").await.unwrap();
        assert_eq!((v.fires, v.skipped, v.last_slot), (1, 1, Some(t0 + 2_000)));
        let r = &v.runs[0];
        assert_eq!(
            (r.run.slot, r.result.as_str()),
            (Some(t0 + 2_000), "skipped")
        );
        assert!(r.run.jobs.is_empty());
        let why = r.run.error.as_deref().unwrap();
        assert!(
            why.contains("max_queued") && why.contains("quota of 1"),
            "{why}"
        );
        // A trigger over the quota is refused, writing nothing.
        let e = s
            .trigger("t", "u", "tick", t0 + 2_300, None)
            .await
            .unwrap_err();
        assert!(matches!(e, ScheduleError::Quota(_)), "{e}");
        assert_eq!(s.get("t", "tick").await.unwrap().runs.len(), 2);
        // The queue drains: the next slot fires.
        let first = &v.runs[1].run.jobs[0];
        s.jobs.cancel("t", first, t0 + 2_500).await.unwrap();
        s.pass("t", epoch, t0 + 3_100).await.unwrap();
        let v = s.get("t", "tick").await.unwrap();
        assert_eq!((v.fires, v.skipped), (2, 1));
        assert_eq!(jobs_per_slot(&store).await.len(), 2);
    }

    /// A trigger is a user's submission: given the rate limiter, its jobs take the tenant's
    /// `submit_per_sec` tokens, and one past them is refused, writing nothing.
    #[tokio::test]
    async fn a_trigger_takes_the_tenants_submission_rate() {
        let t0 = 1_800_000_000_000;
        let (_dir, s, _store) = with_quota(
            crate::quota::Quota {
                submit_per_sec: Some(1.0),
                submit_burst: Some(1),
                ..Default::default()
            },
            t0,
        )
        .await;
        let rates = crate::quota::RateLimiter::default();
        let run = s
            .trigger("t", "u", "tick", t0 + 100, Some(&rates))
            .await
            .unwrap();
        assert_eq!(run.jobs.len(), 1);
        let e = s
            .trigger("t", "u", "tick", t0 + 200, Some(&rates))
            .await
            .unwrap_err();
        assert!(
            matches!(e, ScheduleError::Quota(crate::quota::Refusal::Rate { .. })),
            "{e}"
        );
        assert_eq!(s.get("t", "tick").await.unwrap().runs.len(), 1);
    }

    /// A tenant holds at most MAX_SCHEDULES schedules: one more is refused naming the cap,
    /// and nothing is stored; replacing one at the cap is allowed.
    #[tokio::test]
    async fn a_tenant_at_the_schedule_cap_cannot_create_another() {
        let (_dir, s, store) = setup().await;
        let t0 = 1_800_000_000_000;
        let mut txn = Txn::new();
        for i in 0..crate::schedule::MAX_SCHEDULES {
            let mut sp = spec();
            sp.name = format!("s{i:04}");
            let rec = Schedules::record("u", sp.clone(), None, t0);
            txn = txn.put(
                Key::new("t", keys::schedule(&sp.name)).unwrap(),
                enc(&rec),
                Expect::Absent,
            );
        }
        store.commit(txn).await.unwrap();
        let e = s
            .put("t", "u", spec(), Expect::Absent, t0)
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("schedules: tenant t has 1000 schedules"),
            "{e}"
        );
        assert!(s.get("t", "tick").await.is_err());
        let mut sp = spec();
        sp.name = "s0001".into();
        sp.paused = true;
        assert!(s.put("t", "u", sp, Expect::Any, t0).await.is_ok());
    }

    #[test]
    fn a_tenant_is_passed_again_when_a_slot_is_due_or_something_may_change() {
        let t = |next_due, unsettled, conflicts| PassTally {
            next_due,
            unsettled,
            conflicts,
            ..PassTally::default()
        };
        assert_eq!(NextPass::after(&t(Some(5), false, 0)), NextPass::At(5));
        assert_eq!(NextPass::after(&t(None, false, 0)), NextPass::OnChange);
        assert_eq!(NextPass::after(&t(Some(5), true, 0)), NextPass::EveryTick);
        assert_eq!(NextPass::after(&t(Some(5), false, 1)), NextPass::EveryTick);
        assert!(!NextPass::At(5).due(4) && NextPass::At(5).due(5));
        assert!(NextPass::EveryTick.due(0) && !NextPass::OnChange.due(u64::MAX));
    }

    /// A queued slot waits for a run to end, not for a time: its tenant stays on every tick.
    #[tokio::test]
    async fn a_queued_slot_keeps_its_tenant_on_every_tick() {
        let (_dir, s, store) = setup().await;
        let t0 = 1_800_000_000_000;
        let mut sp = spec();
        sp.overlap = Overlap::Queue;
        s.put("t", "u", sp, Expect::Absent, t0).await.unwrap();
        let epoch = store.next_epoch().await.unwrap();
        let first = s.pass("t", epoch, t0 + 1_100).await.unwrap();
        assert_eq!(NextPass::after(&first), NextPass::At(t0 + 2_000));
        // Slot 2 is queued behind slot 1's unfinished job.
        let queued = s.pass("t", epoch, t0 + 2_100).await.unwrap();
        assert!(queued.fired_lags_ms.is_empty());
        assert_eq!(NextPass::after(&queued), NextPass::EveryTick);
        // Paused: nothing until a change.
        s.set_paused("t", "u", "tick", true, t0 + 2_200)
            .await
            .unwrap();
        let paused = s.pass("t", epoch, t0 + 2_300).await.unwrap();
        assert_eq!(NextPass::after(&paused), NextPass::OnChange);
    }
}
