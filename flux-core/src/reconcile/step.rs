//! The reconciler's decision, pure: given a target's record, its state's spec and version,
//! whether its agent is online and what became of the job it waits for, [`step`] says what to
//! do next (wait, record, or submit a check/apply/verify job). No I/O, so every transition,
//! the back-off and the event bound are unit tested below; the driver in `mod.rs` reads,
//! submits and writes.

use serde::{Deserialize, Serialize};

use crate::model::{Job, JobStatus, Millis};
use crate::named::named_enum;
use crate::state::StateSpec;
use crate::store::Version;

/// Events kept per target.
pub const MAX_EVENTS: usize = 20;
/// Longest back-off between attempts on a failing target.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;

named_enum! {
    /// Where a target stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum TargetState {
        /// Not checked yet (or its agent is not registered).
        Unknown,
        Compliant,
        /// The last check failed; a repair is queued.
        Drifted,
        /// The repair (apply, then verifying check) is running.
        Applying,
        /// The check could not run, the apply failed, or the verifying check still failed.
        Failed,
    }
}

named_enum! {
    /// Which job of a round.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum StepKind {
        Check,
        Apply,
        Verify,
    }
}

/// The job a target is waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub kind: StepKind,
    pub job_id: String,
}

/// Something that happened to a target.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Millis,
    /// `checked`, `drift`, `applying`, `repaired`, `failed`, `compliant`.
    pub kind: String,
    pub message: String,
    pub job_id: Option<String>,
}

/// Reconciliation record of one (state, agent).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetStatus {
    pub state: String,
    pub agent: String,
    pub status: TargetState,
    /// Version of the state the current (or last) round started from.
    pub spec_version: Version,
    /// Version of the state under which `status` was last settled (compliant or failed).
    #[serde(default)]
    pub settled_version: Version,
    /// Rounds started so far.
    pub round: u64,
    pub in_flight: Option<InFlight>,
    pub last_check: Option<Millis>,
    /// When `status` last changed.
    pub last_change: Option<Millis>,
    /// When the next round is due.
    pub next_check: Millis,
    /// Failed rounds in a row (drives the back-off).
    pub failures: u32,
    /// Drifts repaired so far.
    pub repairs: u64,
    pub message: Option<String>,
    /// Tail of the output of the job that failed.
    pub output: Option<String>,
    pub last_job: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// Set while the target's next job waits for the tenant's quota (admission refused it);
    /// the reconciler tries again on its next passes.
    pub deferred: Option<Deferred>,
    /// Failed repairs (an apply that failed, or a check still failing after it) counted
    /// against the state's rollout budget, over state version `repair_failures_version`.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repair_failures: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repair_failures_version: Version,
    /// Liveness of the target's agent (`online`, `unreachable`, `dead`, `unregistered`), filled in
    /// when the record is read through the API; not stored.
    pub agent_state: Option<String>,
}

impl TargetStatus {
    /// The record of a target never seen before.
    pub fn new(state: &str, agent: &str, now: Millis) -> TargetStatus {
        TargetStatus {
            state: state.to_string(),
            agent: agent.to_string(),
            status: TargetState::Unknown,
            spec_version: 0,
            settled_version: 0,
            round: 0,
            in_flight: None,
            last_check: None,
            last_change: None,
            next_check: now,
            failures: 0,
            repairs: 0,
            message: None,
            output: None,
            last_job: None,
            events: Vec::new(),
            deferred: None,
            repair_failures: 0,
            repair_failures_version: 0,
            agent_state: None,
        }
    }

    /// The record to save when the state's rollout holds back the apply this target needs,
    /// for `reason` (no slot free, or remediation halted): drifted and marked deferred,
    /// otherwise unchanged, so that the next pass decides the same step again. `None` when the
    /// record already says so.
    pub fn held_by_rollout(&self, reason: String, now: Millis) -> Option<TargetStatus> {
        if self.status == TargetState::Drifted
            && self
                .deferred
                .as_ref()
                .is_some_and(|d| d.kind == StepKind::Apply && d.reason == reason)
        {
            return None;
        }
        let mut st = self.clone();
        st.set(TargetState::Drifted, now);
        st.event(now, "deferred", format!("apply {reason}"), None);
        st.deferred = Some(Deferred {
            kind: StepKind::Apply,
            since: now,
            reason,
        });
        Some(st)
    }

    /// The record to save when admission refused the `kind` job this target needs, for
    /// `reason`: marked deferred with an event, otherwise unchanged, so that the next pass
    /// decides the same step again. `None` when the record already says so (nothing to write:
    /// a target waiting for its quota costs no write per pass).
    pub fn deferred_by_quota(
        &self,
        kind: StepKind,
        reason: String,
        now: Millis,
    ) -> Option<TargetStatus> {
        if self.deferred.as_ref().is_some_and(|d| d.kind == kind) {
            return None;
        }
        let mut st = self.clone();
        st.event(
            now,
            "deferred",
            format!("{} waits: {reason}", kind.as_str()),
            None,
        );
        st.deferred = Some(Deferred {
            kind,
            since: now,
            reason,
        });
        Some(st)
    }

    /// Whether this target is settled for `version`: its last finished round ran on that
    /// version and ended compliant or failed. A routine re-check in flight does not unsettle it;
    /// a drift found does.
    pub fn settled_at(&self, version: Version) -> Option<TargetState> {
        (self.settled_version == version
            && matches!(self.status, TargetState::Compliant | TargetState::Failed))
        .then_some(self.status)
    }

    fn set(&mut self, status: TargetState, now: Millis) {
        if self.status != status {
            self.status = status;
            self.last_change = Some(now);
        }
    }

    pub(super) fn event(&mut self, now: Millis, kind: &str, message: String, job_id: Option<&str>) {
        self.events.push(Event {
            at: now,
            kind: kind.to_string(),
            message,
            job_id: job_id.map(str::to_string),
        });
        if self.events.len() > MAX_EVENTS {
            let extra = self.events.len() - MAX_EVENTS;
            self.events.drain(..extra);
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A job a target needs but the tenant's quota (or the state's rollout) does not admit yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    pub kind: StepKind,
    /// When it was first refused.
    pub since: Millis,
    /// The refusal, naming the limit.
    pub reason: String,
}

/// What the reconciler knows about the job a target waits for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobView {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Output tail, only needed once the job failed.
    pub output: Option<String>,
}

impl JobView {
    pub fn of(job: &Job) -> JobView {
        JobView {
            status: job.status,
            exit_code: job.exit_code,
            error: job.error.clone(),
            output: None,
        }
    }

    fn describe(&self) -> String {
        match (self.exit_code, &self.error) {
            (Some(c), _) => format!("exited {c}"),
            (None, Some(e)) => format!("{} ({e})", self.status.as_str()),
            (None, None) => self.status.as_str().to_string(),
        }
    }
}

/// Counts of what a pass did, for metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub checks: u64,
    pub drifts: u64,
    pub repairs: u64,
    pub failures: u64,
    /// Jobs not submitted because the tenant's quota refused them.
    pub deferred: u64,
    /// Applies held back by their state's rollout (no slot free, or remediation halted).
    pub held: u64,
}

impl Tally {
    pub(super) fn add(&mut self, o: Tally) {
        self.checks += o.checks;
        self.drifts += o.drifts;
        self.repairs += o.repairs;
        self.failures += o.failures;
        self.deferred += o.deferred;
        self.held += o.held;
    }
}

/// What to do next for one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing now.
    Wait,
    /// Record the new status.
    Save(TargetStatus, Tally),
    /// Submit a job of this kind, then record the status pointing at it.
    Submit(StepKind, TargetStatus, Tally),
}

fn backoff_ms(interval_ms: u64, failures: u32) -> u64 {
    let shift = failures.saturating_sub(1).min(20);
    interval_ms
        .saturating_mul(1u64 << shift)
        .min(MAX_BACKOFF_MS.max(interval_ms))
}

/// Decides the next step for one target. `job` describes the in-flight job (`None` when there
/// is none, or when it no longer exists).
pub fn step(
    cur: &TargetStatus,
    spec: &StateSpec,
    version: Version,
    agent_online: bool,
    job: Option<&JobView>,
    now: Millis,
) -> Step {
    let mut st = cur.clone();
    let interval = spec.interval_secs * 1000;
    let mut tally = Tally::default();
    let Some(flight) = cur.in_flight.clone() else {
        let due = now >= cur.next_check || cur.spec_version != version;
        if !agent_online || !due {
            return Step::Wait;
        }
        if cur.spec_version != version {
            // A new version starts with a clean slate: no back-off inherited from the old one.
            st.failures = 0;
        }
        st.round += 1;
        st.spec_version = version;
        tally.checks += 1;
        return Step::Submit(StepKind::Check, st, tally);
    };
    let Some(job) = job else {
        // The job is gone (deleted with its history): start the round over.
        st.in_flight = None;
        st.next_check = now;
        st.event(
            now,
            "failed",
            format!("{} job {} vanished", flight.kind.as_str(), flight.job_id),
            Some(&flight.job_id),
        );
        return Step::Save(st, tally);
    };
    if !job.status.is_terminal() {
        if flight.kind == StepKind::Apply
            && job.status == JobStatus::Running
            && cur.status != TargetState::Applying
        {
            st.set(TargetState::Applying, now);
            return Step::Save(st, tally);
        }
        return Step::Wait;
    }
    st.in_flight = None;
    st.last_job = Some(flight.job_id.clone());
    let jid = Some(flight.job_id.as_str());
    if cur.spec_version != version {
        // The state changed while this round ran: its result says nothing about the new
        // version. Start a round on the new version at once.
        st.next_check = now;
        return Step::Save(st, tally);
    }
    let ran =
        matches!(job.status, JobStatus::Succeeded | JobStatus::Failed) && job.exit_code.is_some();
    let compliant = ran && job.exit_code == Some(spec.desired_exit_code);
    let fail = |st: &mut TargetStatus, tally: &mut Tally, message: String| {
        st.failures += 1;
        st.set(TargetState::Failed, now);
        st.settled_version = st.spec_version;
        st.message = Some(message.clone());
        st.output = job.output.clone();
        st.next_check = now + backoff_ms(interval, st.failures);
        st.event(now, "failed", message, jid);
        tally.failures += 1;
        if matches!(flight.kind, StepKind::Apply | StepKind::Verify) {
            // A failed repair, counted once against the state's rollout budget.
            if st.repair_failures_version != st.spec_version {
                st.repair_failures = 0;
                st.repair_failures_version = st.spec_version;
            }
            st.repair_failures += 1;
        }
    };
    match flight.kind {
        StepKind::Check | StepKind::Verify => {
            st.last_check = Some(now);
            if compliant {
                if flight.kind == StepKind::Verify {
                    st.repairs += 1;
                    tally.repairs += 1;
                    st.event(
                        now,
                        "repaired",
                        "apply ran and the check now passes".into(),
                        jid,
                    );
                } else if st.status != TargetState::Compliant {
                    st.event(now, "compliant", "check passes".into(), jid);
                }
                st.set(TargetState::Compliant, now);
                st.settled_version = st.spec_version;
                st.failures = 0;
                st.message = None;
                st.output = None;
                st.next_check = now + interval;
            } else if flight.kind == StepKind::Check && ran {
                st.set(TargetState::Drifted, now);
                tally.drifts += 1;
                st.message = Some(format!("check {}", job.describe()));
                st.event(
                    now,
                    "drift",
                    format!("check {}; applying", job.describe()),
                    jid,
                );
                return Step::Submit(StepKind::Apply, st, tally);
            } else if flight.kind == StepKind::Verify && ran {
                fail(
                    &mut st,
                    &mut tally,
                    format!("apply succeeded but the check still {}", job.describe()),
                );
            } else {
                fail(
                    &mut st,
                    &mut tally,
                    format!(
                        "{} did not complete: {}",
                        flight.kind.as_str(),
                        job.describe()
                    ),
                );
            }
        }
        StepKind::Apply => {
            if ran && job.exit_code == Some(0) {
                st.set(TargetState::Applying, now);
                return Step::Submit(StepKind::Verify, st, tally);
            }
            fail(&mut st, &mut tally, format!("apply {}", job.describe()));
        }
    }
    Step::Save(st, tally)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::state::Targets;

    fn spec() -> StateSpec {
        StateSpec {
            name: "motd".into(),
            targets: Targets {
                agents: vec!["a1".into()],
                labels: Default::default(),
            },
            check: "check".into(),
            apply: "apply".into(),
            interval_secs: 10,
            timeout_secs: 5,
            env: BTreeMap::new(),
            desired_exit_code: 0,
            rollout: None,
        }
    }

    fn done(code: i32) -> JobView {
        JobView {
            status: if code == 0 {
                JobStatus::Succeeded
            } else {
                JobStatus::Failed
            },
            exit_code: Some(code),
            error: None,
            output: Some(format!("out {code}")),
        }
    }

    fn running() -> JobView {
        JobView {
            status: JobStatus::Running,
            exit_code: None,
            error: None,
            output: None,
        }
    }

    /// Applies a step the way the driver does, giving submitted jobs the id `j<round><kind>`.
    fn apply_step(s: Step) -> (TargetStatus, Option<StepKind>, Tally) {
        match s {
            Step::Wait => panic!("expected a step"),
            Step::Save(t, tally) => (t, None, tally),
            Step::Submit(k, mut t, tally) => {
                t.in_flight = Some(InFlight {
                    kind: k,
                    job_id: format!("j{}{}", t.round, k.as_str()),
                });
                (t, Some(k), tally)
            }
        }
    }

    #[test]
    fn a_compliant_target_is_checked_once_per_interval() {
        let s = spec();
        let t0 = TargetStatus::new("motd", "a1", 1000);
        let (t, kind, _) = apply_step(step(&t0, &s, 7, true, None, 1000));
        assert_eq!(kind, Some(StepKind::Check));
        assert_eq!((t.round, t.spec_version), (1, 7));
        assert_eq!(step(&t, &s, 7, true, Some(&running()), 1500), Step::Wait);
        let (t, kind, _) = apply_step(step(&t, &s, 7, true, Some(&done(0)), 2000));
        assert_eq!(kind, None);
        assert_eq!(t.status, TargetState::Compliant);
        assert_eq!(t.next_check, 12_000);
        assert_eq!(t.settled_at(7), Some(TargetState::Compliant));
        assert_eq!(step(&t, &s, 7, true, None, 11_999), Step::Wait);
        assert!(matches!(
            step(&t, &s, 7, true, None, 12_000),
            Step::Submit(StepKind::Check, ..)
        ));
        // A new version is checked at once, and an offline agent is left alone.
        assert!(matches!(
            step(&t, &s, 8, true, None, 3000),
            Step::Submit(StepKind::Check, ..)
        ));
        assert_eq!(step(&t, &s, 8, false, None, 3000), Step::Wait);
    }

    #[test]
    fn drift_is_applied_then_verified_and_counted_as_a_repair() {
        let s = spec();
        let t0 = TargetStatus::new("motd", "a1", 0);
        let (t, _, _) = apply_step(step(&t0, &s, 1, true, None, 0));
        let (t, kind, tally) = apply_step(step(&t, &s, 1, true, Some(&done(1)), 100));
        assert_eq!(
            (kind, t.status, tally.drifts),
            (Some(StepKind::Apply), TargetState::Drifted, 1)
        );
        let (t, _, _) = apply_step(step(&t, &s, 1, true, Some(&running()), 150));
        assert_eq!(t.status, TargetState::Applying);
        let (t, kind, _) = apply_step(step(&t, &s, 1, true, Some(&done(0)), 200));
        assert_eq!(kind, Some(StepKind::Verify));
        let (t, kind, tally) = apply_step(step(&t, &s, 1, true, Some(&done(0)), 300));
        assert_eq!(
            (kind, t.status, tally.repairs, t.repairs),
            (None, TargetState::Compliant, 1, 1)
        );
        let kinds: Vec<&str> = t.events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, vec!["drift", "repaired"]);
    }

    #[test]
    fn a_failing_apply_backs_off_exponentially_and_keeps_its_output() {
        let s = spec();
        let mut t = TargetStatus::new("motd", "a1", 0);
        let mut now = 0;
        let mut waits = Vec::new();
        for _ in 0..4 {
            let (t1, _, _) = apply_step(step(&t, &s, 1, true, None, now));
            let (t2, _, _) = apply_step(step(&t1, &s, 1, true, Some(&done(1)), now));
            let (t3, kind, tally) = apply_step(step(&t2, &s, 1, true, Some(&done(2)), now));
            assert_eq!(
                (kind, t3.status, tally.failures),
                (None, TargetState::Failed, 1)
            );
            assert_eq!(t3.output.as_deref(), Some("out 2"));
            assert!(t3.message.as_deref().unwrap().contains("apply exited 2"));
            waits.push(t3.next_check - now);
            now = t3.next_check;
            t = t3;
        }
        assert_eq!(waits, vec![10_000, 20_000, 40_000, 80_000]);
        assert_eq!(t.settled_at(1), Some(TargetState::Failed));
        assert_eq!(backoff_ms(10_000, 40), MAX_BACKOFF_MS);
    }

    #[test]
    fn a_verify_that_still_fails_and_a_check_that_cannot_run_are_failures() {
        let s = spec();
        let t0 = TargetStatus::new("motd", "a1", 0);
        let (t, _, _) = apply_step(step(&t0, &s, 1, true, None, 0));
        let (t, _, _) = apply_step(step(&t, &s, 1, true, Some(&done(1)), 0));
        let (t, _, _) = apply_step(step(&t, &s, 1, true, Some(&done(0)), 0));
        let (t, _, _) = apply_step(step(&t, &s, 1, true, Some(&done(1)), 0));
        assert_eq!(t.status, TargetState::Failed);
        assert_eq!((t.repair_failures, t.repair_failures_version), (1, 1));
        assert!(t.message.unwrap().contains("still exited 1"));

        let (t, _, _) = apply_step(step(&t0, &s, 1, true, None, 0));
        let timed_out = JobView {
            status: JobStatus::TimedOut,
            exit_code: None,
            error: Some("timed out after 5s".into()),
            output: None,
        };
        let (t, kind, _) = apply_step(step(&t, &s, 1, true, Some(&timed_out), 0));
        assert_eq!((kind, t.status), (None, TargetState::Failed));
        // A check that could not run is no failed repair.
        assert_eq!(t.repair_failures, 0);
        assert!(t.message.unwrap().contains("check did not complete"));
    }

    #[test]
    fn failed_repairs_are_counted_over_the_current_version_only() {
        let s = spec();
        let mut t = TargetStatus::new("motd", "a1", 0);
        let mut now = 0;
        let fail_once = |t: &TargetStatus, version, now: &mut Millis| {
            *now = t.next_check.max(*now);
            let (t, _, _) = apply_step(step(t, &s, version, true, None, *now));
            let (t, kind, _) = apply_step(step(&t, &s, version, true, Some(&done(1)), *now));
            assert_eq!(kind, Some(StepKind::Apply));
            let (t, _, _) = apply_step(step(&t, &s, version, true, Some(&done(2)), *now));
            assert_eq!(t.status, TargetState::Failed);
            t
        };
        t = fail_once(&t, 1, &mut now);
        t = fail_once(&t, 1, &mut now);
        assert_eq!((t.repair_failures, t.repair_failures_version), (2, 1));
        t = fail_once(&t, 2, &mut now);
        assert_eq!((t.repair_failures, t.repair_failures_version), (1, 2));
    }

    #[test]
    fn a_round_started_on_an_old_version_is_followed_at_once() {
        let s = spec();
        let t0 = TargetStatus::new("motd", "a1", 0);
        let (t, _, _) = apply_step(step(&t0, &s, 1, true, None, 0));
        let (t, _, _) = apply_step(step(&t, &s, 2, true, Some(&done(0)), 500));
        assert_eq!(t.next_check, 500);
        assert_eq!(t.settled_at(2), None);
        let (t, kind, _) = apply_step(step(&t, &s, 2, true, None, 500));
        assert_eq!((kind, t.spec_version), (Some(StepKind::Check), 2));
    }

    #[test]
    fn a_vanished_job_restarts_the_round() {
        let s = spec();
        let (t, _, _) = apply_step(step(
            &TargetStatus::new("motd", "a1", 0),
            &s,
            1,
            true,
            None,
            0,
        ));
        let (t, kind, _) = apply_step(step(&t, &s, 1, true, None, 50));
        assert_eq!((kind, t.in_flight.clone()), (None, None));
        assert!(matches!(
            step(&t, &s, 1, true, None, 50),
            Step::Submit(StepKind::Check, ..)
        ));
    }

    #[test]
    fn a_job_refused_by_the_quota_is_recorded_once_and_decided_again() {
        let s = spec();
        let t0 = TargetStatus::new("motd", "a1", 0);
        let Step::Submit(kind, _, _) = step(&t0, &s, 1, true, None, 0) else {
            panic!("a new target is checked");
        };
        let t = t0
            .deferred_by_quota(kind, "tenant acme has 3 queued jobs".into(), 5)
            .expect("the first refusal is recorded");
        let d = t.deferred.clone().unwrap();
        assert_eq!((d.kind, d.since), (StepKind::Check, 5));
        assert_eq!(t.events.last().unwrap().kind, "deferred");
        assert!(t.events.last().unwrap().message.contains("3 queued jobs"));
        // Nothing else moved: the next pass decides the same check again.
        assert_eq!((t.round, t.in_flight.clone(), t.next_check), (0, None, 0));
        assert!(matches!(
            step(&t, &s, 1, true, None, 10),
            Step::Submit(StepKind::Check, ..)
        ));
        // Refused again: no new write, no new event.
        assert_eq!(t.deferred_by_quota(kind, "again".into(), 10), None);
        // A different step refused is recorded.
        assert!(
            t.deferred_by_quota(StepKind::Apply, "x".into(), 10)
                .is_some()
        );
    }

    #[test]
    fn events_are_bounded() {
        let mut t = TargetStatus::new("s", "a", 0);
        for i in 0..(MAX_EVENTS as u64 + 5) {
            t.event(i, "checked", format!("{i}"), None);
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
        assert_eq!(t.events[0].message, "5");
    }
}
