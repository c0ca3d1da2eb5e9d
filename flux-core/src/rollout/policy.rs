//! The rollout policy: a pure [`step`] over plain data that says what a rollout does next
//! (which targets end, which start, which are skipped, whether it halts or finishes). No I/O:
//! the leader's driver (`driver.rs`) reads the record and its jobs, calls [`step`] and commits
//! what it returns.
//!
//! Rules:
//! - **concurrency**: targets running (their job, or their verify job, not seen ended) never
//!   exceed `max_concurrency`; a job counts as running until the record says it ended, so a
//!   target is started only after the one it replaces is recorded as done;
//! - **canary**: the first `canary` targets run first, alone (still within the concurrency);
//!   no other target starts until every canary succeeded, and any canary error halts;
//! - **budget**: errors (failed targets, and skipped ones with `offline_is_error`) are counted
//!   over the whole rollout; once they exceed `max_errors` no new target starts (0: the first
//!   error halts);
//! - **batches**: with `batch_wait`, targets start in batches of `max_concurrency`: a batch
//!   starts once no target runs and `batch_wait` has passed since the last target ended;
//!   without it, a new target starts as soon as a slot frees (a sliding window);
//! - a target whose agent is offline at its turn is `skipped`, and takes no slot.
//!
//! Guarantees (unit tested below): concurrency is never exceeded whatever the input; a
//! halted, paused or cancelled rollout starts nothing; limits given as percentages are rounded
//! up and the concurrency is at least 1.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::model::{JobStatus, Millis};
use crate::named::named_enum;

/// A bound given as a count or as a percentage of the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Limit {
    Count(u32),
    /// 1 to 100.
    Percent(u32),
}

impl Limit {
    /// Reads `"3"` or `"25%"`. Percentages must be 1 to 100.
    pub fn parse(s: &str) -> Result<Limit, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: u32 = p
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a percentage such as \"10%\""))?;
            if !(1..=100).contains(&p) {
                return Err(format!("a percentage must be 1% to 100%, not {p}%"));
            }
            return Ok(Limit::Percent(p));
        }
        s.parse::<u32>()
            .map(Limit::Count)
            .map_err(|_| format!("{s:?} is neither a count nor a percentage such as \"10%\""))
    }

    /// The bound over `n` targets: a count as given, a percentage rounded up.
    pub fn of(self, n: usize) -> usize {
        match self {
            Limit::Count(c) => c as usize,
            Limit::Percent(p) => (n * p as usize).div_ceil(100),
        }
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Count(c) => write!(f, "{c}"),
            Limit::Percent(p) => write!(f, "{p}%"),
        }
    }
}

/// Targets running at once over `n` targets: the limit, at least 1 (and at most `n`).
pub fn concurrency(limit: Limit, n: usize) -> usize {
    limit.of(n).clamp(1, n.max(1))
}

named_enum! {
    /// Where one target of a rollout stands.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum TargetState {
        /// Not started yet.
        Pending,
        /// Its job was created and has not been seen ending.
        Running,
        /// Its job succeeded; its verify job has not been seen ending.
        Verifying,
        Succeeded,
        /// Its job (or verify) failed, timed out, was lost with its agent or cancelled by a user.
        Failed,
        /// Its agent was offline at its turn.
        Skipped,
        /// Its job was cancelled because the rollout was (or halted with `on_halt = cancel`).
        Cancelled,
        /// The rollout halted or was cancelled before its turn.
        NotStarted,
    }
}

impl TargetState {
    /// Running or verifying: it holds a slot.
    pub fn is_active(self) -> bool {
        matches!(self, TargetState::Running | TargetState::Verifying)
    }

    pub fn is_done(self) -> bool {
        !self.is_active() && self != TargetState::Pending
    }
}

/// One target of a rollout, as recorded.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub node_id: String,
    pub state: TargetState,
    /// One of the canaries (the first `canary` targets).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub canary: bool,
    /// Its run job, once started.
    pub job_id: Option<String>,
    /// Its verify job, once its run succeeded.
    pub verify_job_id: Option<String>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub exit_code: Option<i32>,
    /// Why it did not succeed.
    pub error: Option<String>,
}

impl Target {
    pub fn new(node_id: &str, canary: bool) -> Target {
        Target {
            node_id: node_id.to_string(),
            state: TargetState::Pending,
            canary,
            job_id: None,
            verify_job_id: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
        }
    }

    /// The job whose end the target waits for, if it waits for one.
    pub fn current_job(&self) -> Option<&str> {
        match self.state {
            TargetState::Running => self.job_id.as_deref(),
            TargetState::Verifying => self.verify_job_id.as_deref(),
            _ => None,
        }
    }
}

named_enum! {
    /// Life cycle of a rollout.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum RolloutStatus {
        /// Starting targets as slots free.
        Running,
        /// Starting nothing; running targets finish and are recorded.
        Paused,
        /// The budget is spent (or a canary failed): nothing new starts; waiting for running
        /// targets (cancelled with `on_halt = cancel`).
        Halting,
        /// Cancelled by a user: running targets are cancelled; waiting for them to end.
        Cancelling,
        /// Finished: every target succeeded.
        Succeeded,
        /// Finished within the budget, but some targets failed or were skipped.
        Failed,
        /// Finished after the budget stopped it (or a canary failed).
        Halted,
        /// Finished after a user cancelled it.
        Cancelled,
    }
}

impl RolloutStatus {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RolloutStatus::Succeeded
                | RolloutStatus::Failed
                | RolloutStatus::Halted
                | RolloutStatus::Cancelled
        )
    }
}

/// What to do with running targets when the budget is spent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnHalt {
    /// Let them finish (and record their results).
    #[default]
    Wait,
    /// Cancel their jobs.
    Cancel,
}

/// A rollout's parameters, resolved over its number of targets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    /// Targets running at once, at least 1.
    pub max_concurrency: usize,
    /// Errors tolerated over the whole rollout; one more halts it.
    pub max_errors: usize,
    /// Canaries (the first targets), run first and alone.
    #[serde(default)]
    pub canary: usize,
    /// Least time between the end of a batch and the start of the next; 0: a sliding window.
    #[serde(default)]
    pub batch_wait_ms: u64,
    /// A target offline at its turn counts as an error.
    #[serde(default)]
    pub offline_is_error: bool,
    #[serde(default)]
    pub on_halt: OnHalt,
    /// A verify job runs on each target after its job succeeded.
    #[serde(default)]
    pub verify: bool,
}

/// How a target's job ended, as the driver read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobEnd {
    pub status: JobStatus,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

impl JobEnd {
    /// Why the job did not succeed, in a few words.
    fn why(&self) -> String {
        match (self.status, self.exit_code) {
            (JobStatus::TimedOut, _) => "timed out".into(),
            (JobStatus::Cancelled, _) => "its job was cancelled".into(),
            (_, Some(c)) => format!("exit code {c}"),
            _ => self.error.clone().unwrap_or_else(|| "failed".into()),
        }
    }
}

/// What [`step`] decides over.
#[derive(Clone, Copy, Debug)]
pub struct RolloutView<'a> {
    pub status: RolloutStatus,
    pub params: &'a Params,
    pub targets: &'a [Target],
    /// The ended jobs of active targets, by job id; a job absent here has not ended.
    pub ended: &'a HashMap<String, JobEnd>,
    /// The node ids of agents that take work now.
    pub online: &'a HashSet<String>,
}

/// One decision of [`step`]; indices are into the rollout's targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// The target ended (its state: succeeded, failed or cancelled).
    Finish {
        target: usize,
        state: TargetState,
        exit_code: Option<i32>,
        error: Option<String>,
    },
    /// The target's run succeeded: start its verify job.
    Verify(usize),
    /// Start the target's job.
    Start(usize),
    /// The target's agent is offline at its turn.
    Skip(usize),
    /// Cancel this running job (re-issued on every pass until it ends: cancelling is
    /// idempotent, and a successor leader must do it too).
    CancelJob(String),
    /// Stop starting targets, for this reason.
    Halt(String),
    /// The rollout is over, with this status; targets still pending become `not_started`.
    Complete(RolloutStatus),
}

/// Errors counted against the budget in `targets`.
pub fn errors(params: &Params, targets: &[TargetState]) -> usize {
    targets
        .iter()
        .filter(|s| {
            **s == TargetState::Failed || (params.offline_is_error && **s == TargetState::Skipped)
        })
        .count()
}

/// What the rollout does next. Pure.
pub fn step(v: &RolloutView<'_>, now: Millis) -> Vec<Action> {
    let p = v.params;
    let mut out = Vec::new();
    if v.status.is_finished() {
        return out;
    }
    // States as they will be once this step's decisions are recorded.
    let mut states: Vec<TargetState> = v.targets.iter().map(|t| t.state).collect();
    let mut last_end: Option<Millis> = v.targets.iter().filter_map(|t| t.finished_at).max();
    let stopping = matches!(v.status, RolloutStatus::Cancelling | RolloutStatus::Halting);
    let cancels = v.status == RolloutStatus::Cancelling
        || (v.status == RolloutStatus::Halting && p.on_halt == OnHalt::Cancel);
    // 1. Targets whose job ended.
    for (i, t) in v.targets.iter().enumerate() {
        let Some(job) = t.current_job() else { continue };
        let Some(end) = v.ended.get(job) else {
            continue;
        };
        let ok = end.status == JobStatus::Succeeded;
        if ok && t.state == TargetState::Running && p.verify && !stopping {
            out.push(Action::Verify(i));
            continue;
        }
        let (state, error) = if ok {
            (TargetState::Succeeded, None)
        } else if end.status == JobStatus::Cancelled && cancels {
            (
                TargetState::Cancelled,
                Some("cancelled with the rollout".into()),
            )
        } else if t.state == TargetState::Verifying {
            (TargetState::Failed, Some(format!("verify: {}", end.why())))
        } else {
            (TargetState::Failed, Some(end.why()))
        };
        states[i] = state;
        last_end = Some(now);
        out.push(Action::Finish {
            target: i,
            state,
            exit_code: end.exit_code,
            error,
        });
    }
    let mut status = v.status;
    // 2. The budget and the canaries.
    let halt_reason = |states: &[TargetState]| -> Option<String> {
        let canary_failed = v.targets.iter().zip(states).any(|(t, s)| {
            t.canary
                && (*s == TargetState::Failed || (p.offline_is_error && *s == TargetState::Skipped))
        });
        let e = errors(p, states);
        if canary_failed {
            Some("a canary failed".into())
        } else if e > p.max_errors {
            Some(format!(
                "{e} errors exceed the budget of {} (max_errors)",
                p.max_errors
            ))
        } else {
            None
        }
    };
    if matches!(status, RolloutStatus::Running | RolloutStatus::Paused)
        && let Some(why) = halt_reason(&states)
    {
        out.push(Action::Halt(why));
        status = RolloutStatus::Halting;
    }
    // 3. New targets, while running.
    if status == RolloutStatus::Running {
        let mut running = states.iter().filter(|s| s.is_active()).count();
        let canaries_done = v
            .targets
            .iter()
            .zip(&states)
            .all(|(t, s)| !t.canary || s.is_done());
        let batch_ready = p.batch_wait_ms == 0
            || (running == 0 && last_end.is_none_or(|e| now >= e.saturating_add(p.batch_wait_ms)));
        if batch_ready {
            for i in 0..v.targets.len() {
                if running >= p.max_concurrency {
                    break;
                }
                let t = &v.targets[i];
                if states[i] != TargetState::Pending || (!canaries_done && !t.canary) {
                    continue;
                }
                if v.online.contains(&t.node_id) {
                    out.push(Action::Start(i));
                    states[i] = TargetState::Running;
                    running += 1;
                } else {
                    out.push(Action::Skip(i));
                    states[i] = TargetState::Skipped;
                    if let Some(why) = halt_reason(&states) {
                        out.push(Action::Halt(why));
                        status = RolloutStatus::Halting;
                        break;
                    }
                }
            }
        }
    }
    // 4. Cancel what runs, when stopping that way.
    let cancels = status == RolloutStatus::Cancelling
        || (status == RolloutStatus::Halting && p.on_halt == OnHalt::Cancel);
    if cancels {
        for (i, t) in v.targets.iter().enumerate() {
            if states[i].is_active()
                && let Some(job) = t.current_job()
            {
                out.push(Action::CancelJob(job.to_string()));
            }
        }
    }
    // 5. The end.
    let active = states.iter().any(|s| s.is_active());
    let pending = states.contains(&TargetState::Pending);
    let verifying = out.iter().any(|a| matches!(a, Action::Verify(_)));
    if !active && !verifying {
        let done = match status {
            RolloutStatus::Cancelling => Some(RolloutStatus::Cancelled),
            RolloutStatus::Halting => Some(RolloutStatus::Halted),
            RolloutStatus::Running | RolloutStatus::Paused if !pending => {
                Some(if states.iter().all(|s| *s == TargetState::Succeeded) {
                    RolloutStatus::Succeeded
                } else {
                    RolloutStatus::Failed
                })
            }
            _ => None,
        };
        out.extend(done.map(Action::Complete));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(c: usize, e: usize) -> Params {
        Params {
            max_concurrency: c,
            max_errors: e,
            canary: 0,
            batch_wait_ms: 0,
            offline_is_error: false,
            on_halt: OnHalt::Wait,
            verify: false,
        }
    }

    /// A small simulated fleet: targets, the jobs' outcomes by node, and the record updated by
    /// the actions exactly as the driver does.
    struct Sim {
        status: RolloutStatus,
        p: Params,
        targets: Vec<Target>,
        online: HashSet<String>,
        ended: HashMap<String, JobEnd>,
        next_job: usize,
        max_running_seen: usize,
        starts: Vec<String>,
    }

    impl Sim {
        fn new(n: usize, p: Params) -> Sim {
            let canary = p.canary;
            Sim {
                status: RolloutStatus::Running,
                targets: (0..n)
                    .map(|i| Target::new(&format!("n{i}"), i < canary))
                    .collect(),
                online: (0..n).map(|i| format!("n{i}")).collect(),
                p,
                ended: HashMap::new(),
                next_job: 0,
                max_running_seen: 0,
                starts: Vec::new(),
            }
        }

        fn step(&mut self, now: Millis) -> Vec<Action> {
            let view = RolloutView {
                status: self.status,
                params: &self.p,
                targets: &self.targets,
                ended: &self.ended,
                online: &self.online,
            };
            let actions = step(&view, now);
            for a in &actions {
                match a {
                    Action::Finish {
                        target,
                        state,
                        error,
                        ..
                    } => {
                        let t = &mut self.targets[*target];
                        t.state = *state;
                        t.error = error.clone();
                        t.finished_at = Some(now);
                    }
                    Action::Verify(i) => {
                        self.next_job += 1;
                        let t = &mut self.targets[*i];
                        t.state = TargetState::Verifying;
                        t.verify_job_id = Some(format!("v{}", self.next_job));
                    }
                    Action::Start(i) => {
                        self.next_job += 1;
                        let t = &mut self.targets[*i];
                        assert_eq!(t.state, TargetState::Pending, "a target starts once");
                        t.state = TargetState::Running;
                        t.job_id = Some(format!("j{}", self.next_job));
                        t.started_at = Some(now);
                        self.starts.push(t.node_id.clone());
                    }
                    Action::Skip(i) => self.targets[*i].state = TargetState::Skipped,
                    Action::CancelJob(_) => {}
                    Action::Halt(_) => self.status = RolloutStatus::Halting,
                    Action::Complete(s) => {
                        self.status = *s;
                        for t in &mut self.targets {
                            if t.state == TargetState::Pending {
                                t.state = TargetState::NotStarted;
                            }
                        }
                    }
                }
            }
            let running = self.targets.iter().filter(|t| t.state.is_active()).count();
            self.max_running_seen = self.max_running_seen.max(running);
            assert!(
                running <= self.p.max_concurrency,
                "{running} running > {}",
                self.p.max_concurrency
            );
            actions
        }

        /// Ends the current job of every active target, `ok` deciding by node.
        fn end_all(&mut self, ok: impl Fn(&str) -> bool) {
            for t in &self.targets {
                if let Some(j) = t.current_job() {
                    let good = ok(&t.node_id);
                    self.ended.insert(
                        j.to_string(),
                        JobEnd {
                            status: if good {
                                JobStatus::Succeeded
                            } else {
                                JobStatus::Failed
                            },
                            exit_code: Some(if good { 0 } else { 1 }),
                            error: None,
                        },
                    );
                }
            }
        }

        fn run(&mut self, ok: impl Fn(&str) -> bool + Copy) {
            for round in 0..1000u64 {
                self.step(round * 1000);
                if self.status.is_finished() {
                    return;
                }
                self.end_all(ok);
            }
            panic!("did not finish");
        }

        fn count(&self, s: TargetState) -> usize {
            self.targets.iter().filter(|t| t.state == s).count()
        }
    }

    #[test]
    fn limits_parse_counts_and_percentages_and_round_up() {
        assert_eq!(Limit::parse("3"), Ok(Limit::Count(3)));
        assert_eq!(Limit::parse("10%"), Ok(Limit::Percent(10)));
        for bad in ["0%", "101%", "-1", "x", "1.5%", ""] {
            assert!(Limit::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Limit::Percent(10).of(5), 1);
        assert_eq!(Limit::Percent(10).of(11), 2);
        assert_eq!(Limit::Percent(20).of(10), 2);
        assert_eq!(Limit::Percent(100).of(7), 7);
        assert_eq!(concurrency(Limit::Percent(1), 3), 1);
        assert_eq!(concurrency(Limit::Count(50), 3), 3);
        assert_eq!(concurrency(Limit::Count(0), 3), 1);
    }

    #[test]
    fn concurrency_is_never_exceeded_and_every_target_runs_once() {
        for (n, c) in [(1, 1), (5, 2), (10, 3), (7, 7), (20, 1)] {
            let mut s = Sim::new(n, params(c, 0));
            s.run(|_| true);
            assert_eq!(s.status, RolloutStatus::Succeeded);
            assert_eq!(s.count(TargetState::Succeeded), n);
            assert_eq!(s.max_running_seen, c.min(n), "n={n} c={c}");
            let mut starts = s.starts.clone();
            starts.sort();
            starts.dedup();
            assert_eq!(starts.len(), n, "each target started exactly once");
        }
    }

    #[test]
    fn the_budget_counts_over_the_whole_rollout_not_per_batch() {
        // One failure per batch of 2 (odd nodes fail): with a budget of 2 the third failure
        // halts, although no batch ever had more than one.
        let mut s = Sim::new(10, params(2, 2));
        s.run(|n| n.trim_start_matches('n').parse::<u32>().unwrap() % 2 == 0);
        assert_eq!(s.status, RolloutStatus::Halted);
        assert_eq!(s.count(TargetState::Failed), 3);
        assert_eq!(s.count(TargetState::Succeeded), 3);
        assert_eq!(s.count(TargetState::NotStarted), 4);
    }

    #[test]
    fn zero_errors_halts_at_the_first_failure_and_running_targets_finish() {
        let mut s = Sim::new(6, params(3, 0));
        s.run(|n| n != "n1");
        assert_eq!(s.status, RolloutStatus::Halted);
        assert_eq!(s.starts.len(), 3, "nothing started after the failure");
        assert_eq!(s.count(TargetState::Succeeded), 2);
        assert_eq!(s.count(TargetState::NotStarted), 3);
    }

    #[test]
    fn failures_within_the_budget_finish_as_failed() {
        let mut s = Sim::new(4, params(2, 1));
        s.run(|n| n != "n3");
        assert_eq!(s.status, RolloutStatus::Failed);
        assert_eq!(s.count(TargetState::Succeeded), 3);
    }

    #[test]
    fn canaries_run_alone_first_and_a_failing_canary_halts() {
        let mut p = params(5, 10);
        p.canary = 1;
        let mut s = Sim::new(6, p.clone());
        let first = s.step(0);
        assert_eq!(first, vec![Action::Start(0)], "the canary alone");
        s.run(|n| n != "n0");
        assert_eq!(s.status, RolloutStatus::Halted);
        assert_eq!(s.starts, vec!["n0".to_string()], "nothing after the canary");
        // A good canary lets the rest go, up to the concurrency.
        let mut s = Sim::new(6, p);
        s.step(0);
        s.end_all(|_| true);
        let next = s.step(1);
        assert_eq!(
            next.iter()
                .filter(|a| matches!(a, Action::Start(_)))
                .count(),
            5
        );
        s.run(|_| true);
        assert_eq!(s.status, RolloutStatus::Succeeded);
    }

    #[test]
    fn offline_targets_are_skipped_without_a_slot_and_count_only_when_asked() {
        let mut s = Sim::new(4, params(1, 0));
        s.online.remove("n1");
        s.online.remove("n2");
        s.run(|_| true);
        assert_eq!(s.status, RolloutStatus::Failed, "skipped is not succeeded");
        assert_eq!(s.count(TargetState::Skipped), 2);
        assert_eq!(s.count(TargetState::Succeeded), 2);
        let mut p = params(1, 0);
        p.offline_is_error = true;
        let mut s = Sim::new(4, p);
        s.online.remove("n1");
        s.run(|_| true);
        assert_eq!(s.status, RolloutStatus::Halted);
        assert_eq!(s.starts, vec!["n0".to_string()]);
    }

    #[test]
    fn batches_wait_for_the_whole_batch_and_the_pause_between() {
        let mut p = params(2, 0);
        p.batch_wait_ms = 5000;
        let mut s = Sim::new(4, p);
        assert_eq!(s.step(0).len(), 2);
        // One of the batch ends: nothing starts while the other runs.
        let j = s.targets[0].job_id.clone().unwrap();
        s.ended.insert(
            j,
            JobEnd {
                status: JobStatus::Succeeded,
                exit_code: Some(0),
                error: None,
            },
        );
        assert!(!s.step(1000).iter().any(|a| matches!(a, Action::Start(_))));
        s.end_all(|_| true);
        s.step(2000); // the batch ends at 2000
        assert!(!s.step(6999).iter().any(|a| matches!(a, Action::Start(_))));
        let starts = s
            .step(7000)
            .iter()
            .filter(|a| matches!(a, Action::Start(_)))
            .count();
        assert_eq!(starts, 2);
    }

    #[test]
    fn paused_starts_nothing_but_records_results_and_cancel_cancels_running_jobs() {
        let mut s = Sim::new(4, params(2, 0));
        s.step(0);
        s.status = RolloutStatus::Paused;
        s.end_all(|_| true);
        let a = s.step(1);
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::Finish { .. }))
                .count(),
            2
        );
        assert!(!a.iter().any(|a| matches!(a, Action::Start(_))));
        s.status = RolloutStatus::Running;
        s.step(2);
        s.status = RolloutStatus::Cancelling;
        let a = s.step(3);
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::CancelJob(_)))
                .count(),
            2
        );
        assert!(!a.iter().any(|a| matches!(a, Action::Complete(_))));
        for t in &s.targets {
            if let Some(j) = t.current_job() {
                s.ended.insert(
                    j.to_string(),
                    JobEnd {
                        status: JobStatus::Cancelled,
                        exit_code: None,
                        error: None,
                    },
                );
            }
        }
        s.step(4);
        assert_eq!(s.status, RolloutStatus::Cancelled);
        assert_eq!(s.count(TargetState::Cancelled), 2);
    }

    #[test]
    fn on_halt_cancel_cancels_the_running_jobs_once_the_budget_is_spent() {
        let mut p = params(3, 0);
        p.on_halt = OnHalt::Cancel;
        let mut s = Sim::new(3, p);
        s.step(0);
        let j = s.targets[0].job_id.clone().unwrap();
        s.ended.insert(
            j,
            JobEnd {
                status: JobStatus::Failed,
                exit_code: Some(2),
                error: None,
            },
        );
        let a = s.step(1);
        assert!(a.contains(&Action::Halt(
            "1 errors exceed the budget of 0 (max_errors)".into()
        )));
        assert_eq!(
            a.iter()
                .filter(|a| matches!(a, Action::CancelJob(_)))
                .count(),
            2
        );
        assert_eq!(s.targets[0].error.as_deref(), Some("exit code 2"));
    }

    #[test]
    fn a_failed_verify_is_an_error_and_a_good_one_a_success() {
        let mut p = params(2, 5);
        p.verify = true;
        let mut s = Sim::new(2, p);
        s.step(0);
        s.end_all(|_| true);
        let a = s.step(1);
        assert_eq!(a, vec![Action::Verify(0), Action::Verify(1)]);
        s.end_all(|n| n == "n0");
        s.step(2);
        assert_eq!(s.status, RolloutStatus::Failed);
        assert_eq!(s.targets[1].state, TargetState::Failed);
        assert_eq!(s.targets[1].error.as_deref(), Some("verify: exit code 1"));
        assert_eq!(s.targets[0].state, TargetState::Succeeded);
    }

    #[test]
    fn a_finished_rollout_does_nothing() {
        let mut s = Sim::new(2, params(1, 0));
        s.status = RolloutStatus::Halted;
        assert!(s.step(0).is_empty());
    }
}
