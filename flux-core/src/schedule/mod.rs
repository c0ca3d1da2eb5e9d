//! Schedules: cron jobs that fire exactly once per slot, whatever fails.
//!
//! A schedule is a stored object (`schedules/<name>`, versioned with CAS and `If-Match` like a
//! state) naming a cron expression in a time zone ([`cron`]), what each slot starts (a job
//! spec, [`What::Job`], or a rollout, [`What::Rollout`], created by the rollout module in the
//! firing's transaction), and its policies ([`policy`]: `overlap`, `missed`, `grace`, jitter,
//! `paused`). The leader fires it ([`driver`]); where its firing stands and its last runs are
//! its status record (`schedule_status/<name>`), which only a firing (or `trigger`) writes.
//!
//! A schedule as the API takes it (`examples/schedule.json`):
//!
//! ```json
//! {"name": "nightly-backup", "cron": "30 2 * * *", "tz": "Europe/Berlin",
//!  "what": {"job": {"command": "/usr/local/bin/backup", "selector": "role=db", "all": true}},
//!  "overlap": "skip", "missed": "once", "grace_secs": 600, "jitter_secs": 60}
//! ```
//!
//! `cron`: five fields, six with seconds first, or `@daily` etc.; `tz`: an IANA name (default
//! UTC); `overlap`: `allow` (default), `skip` or `queue`; `missed`: `skip`, `once` (default)
//! or `{"catch_up": N}`; `grace_secs`: how late a slot may still run as on time (default 60).
//!
//! Guarantees:
//! - every write of a schedule is a CAS on its version; `put` and `delete` answer
//!   PreconditionFailed when the caller's version is not the stored one;
//! - a refused schedule (bad cron field, unknown zone, firing more often than the node's
//!   minimum interval, a bad job spec) stores nothing, and the error names the field;
//! - a slot's jobs and the status record that says the slot was fired are one fenced
//!   transaction, conditional on the schedule's version ([`driver`]): a slot runs at most once
//!   and a leader dying at any instant leaves its successor the record to continue from;
//! - a schedule keeps its last [`MAX_RUNS`] runs; listing reads what it returns.

mod apply;
pub mod cron;
pub mod driver;
mod file;
pub mod plan;
pub mod policy;
pub mod secrets;
mod service;

pub use apply::apply;
pub use cron::{CronError, CronSchedule};
pub use driver::PassTally;
pub use file::parse_schedule_tables;
pub use policy::{Cursor, Missed, Overlap};
pub use service::{RunView, ScheduleError, ScheduleView, Schedules};

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Millis, SubmitJob, valid_ident};
use crate::selector::Selector;

/// Runs a schedule keeps in its status record (older ones are dropped as new ones come).
pub const MAX_RUNS: usize = 20;
/// Longest schedule name (its runs' job groups carry it).
pub const MAX_NAME_LEN: usize = 63;
/// Default `--min-schedule-interval` (one minute).
pub const DEFAULT_MIN_INTERVAL_MS: Millis = 60_000;
/// Default `grace`.
pub const DEFAULT_GRACE_SECS: u64 = 60;
/// Largest `grace` and `jitter` (one day).
pub const MAX_DELAY_SECS: u64 = 86_400;
/// Largest `catch_up`.
pub const MAX_CATCH_UP: u32 = 1000;
/// Most schedules a tenant may have (and a state file may declare).
pub const MAX_SCHEDULES: usize = 1000;
/// Most schedules listed per page.
pub const MAX_LIST: usize = 1000;

/// What a slot starts. An enum so that other kinds of run can be added beside jobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum What {
    /// A job (or one per matching agent), as an ad-hoc run would submit it.
    Job(JobSpec),
    /// A rollout (the body of `POST /v1/rollouts`), its targets resolved at fire time by the
    /// rollout module, as `fluxctl job run --all` with rollout options would start it.
    Rollout(crate::rollout::RolloutSpec),
}

impl What {
    /// A one-line rendering: what runs where.
    pub fn display(&self) -> String {
        match self {
            What::Job(j) => j.display(),
            What::Rollout(r) => {
                let cmd = match (&r.command, &r.argv) {
                    (Some(c), _) => c.clone(),
                    (None, Some(a)) => a.join(" "),
                    _ => String::new(),
                };
                if r.nodes.is_empty() {
                    format!("{cmd} as a rollout over {}", r.selector)
                } else {
                    format!("{cmd} as a rollout over {}", r.nodes.join(","))
                }
            }
        }
    }
}

/// The job a slot submits: the fields of an ad-hoc submission a schedule may set.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub command: Option<String>,
    pub argv: Option<Vec<String>>,
    pub node_id: Option<String>,
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// One job per online agent the selector matches (a fan-out), resolved at fire time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Secret environment variables: their values in a request; as stored and returned, a
    /// digest of each ([`secrets`]), the values kept apart and given to each run's jobs as an
    /// ad-hoc job's `secret_env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secret_env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    pub timeout_secs: Option<u64>,
    pub max_attempts: Option<u32>,
    pub priority: Option<i32>,
    /// Fire even when `node_id` names no agent known yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unknown_node: bool,
}

impl JobSpec {
    /// The submission each run makes.
    pub fn submission(&self) -> SubmitJob {
        SubmitJob {
            command: self.command.clone(),
            argv: self.argv.clone(),
            node_id: self.node_id.clone(),
            env: self.env.clone(),
            secret_env: self.secret_env.clone(),
            workdir: self.workdir.clone(),
            timeout_secs: self.timeout_secs,
            max_attempts: self.max_attempts,
            priority: self.priority,
            selector: self.selector.clone(),
            fan_out: self.all,
            allow_unknown_node: self.allow_unknown_node,
            ..SubmitJob::default()
        }
    }

    /// A one-line rendering: command and where it runs.
    pub fn display(&self) -> String {
        let cmd = match (&self.command, &self.argv) {
            (Some(c), _) => c.clone(),
            (None, Some(a)) => a.join(" "),
            _ => String::new(),
        };
        let at = match (&self.node_id, self.selector.is_empty()) {
            (Some(n), _) => format!(" on {n}"),
            (None, false) if self.all => format!(" on all of {}", self.selector),
            (None, false) => format!(" on one of {}", self.selector),
            _ => String::new(),
        };
        format!("{cmd}{at}")
    }
}

fn utc() -> String {
    "UTC".into()
}
fn default_grace() -> u64 {
    DEFAULT_GRACE_SECS
}

/// One schedule, as sent to and returned by the API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: String,
    pub cron: String,
    #[serde(default = "utc")]
    pub tz: String,
    pub what: What,
    #[serde(default)]
    pub overlap: Overlap,
    #[serde(default)]
    pub missed: Missed,
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    #[serde(default)]
    pub jitter_secs: u64,
    #[serde(default)]
    pub paused: bool,
}

impl ScheduleSpec {
    /// The job a slot submits (`None` for a rollout).
    pub fn job(&self) -> Option<&JobSpec> {
        match &self.what {
            What::Job(j) => Some(j),
            What::Rollout(_) => None,
        }
    }
}

/// A schedule as stored: the spec plus who changed it and when. Its version is the store's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSchedule {
    pub spec: ScheduleSpec,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub updated_by: String,
    /// Slots at or before this instant never run: set at creation, on resume and when the
    /// expression or time zone changes (slots of the old expression are not caught up).
    pub active_since: Millis,
}

/// One run of a schedule: a slot fired (or a `trigger`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// The slot; `None` for a run started by `trigger`.
    pub slot: Option<Millis>,
    pub fired_at: Millis,
    /// The job group of the run (every job of it carries it).
    pub group: String,
    pub jobs: Vec<String>,
    /// The rollout the run started (a schedule of `what.rollout`).
    pub rollout: Option<String>,
    /// The slot was skipped rather than fired (its jobs would have taken the tenant past
    /// its `max_queued` quota); `error` says why. It counts as skipped, not fired.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// Why no job was started (no agent matched, say); the slot counts as fired.
    pub error: Option<String>,
    /// Who started it: the leader, or the user who triggered it.
    pub by: String,
}

/// Where a schedule's firing stands; written only with a firing (or a trigger).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleStatus {
    #[serde(default)]
    pub cursor: Cursor,
    /// The newest runs, oldest first, at most [`MAX_RUNS`].
    #[serde(default)]
    pub runs: Vec<Run>,
    #[serde(default)]
    pub fires: u64,
    #[serde(default)]
    pub missed: u64,
    #[serde(default)]
    pub skipped: u64,
}

impl ScheduleStatus {
    /// Adds a run, dropping the oldest beyond [`MAX_RUNS`].
    pub fn push_run(&mut self, run: Run) {
        self.runs.push(run);
        if self.runs.len() > MAX_RUNS {
            let extra = self.runs.len() - MAX_RUNS;
            self.runs.drain(..extra);
        }
    }
}

/// The job group of a slot's run: `s.<slot>.<name>` (a valid job group, at most 80 bytes).
pub fn slot_group(name: &str, slot: Millis) -> String {
    format!("s.{slot}.{name}")
}

/// The job group of a triggered run: `t.<id>.<name>`.
pub fn trigger_group(name: &str) -> String {
    format!("t.{}.{name}", uuid::Uuid::now_v7().simple())
}

/// The schedule and slot a job group names (`None` for a trigger or another group).
pub fn parse_slot_group(group: &str) -> Option<(&str, Millis)> {
    let rest = group.strip_prefix("s.")?;
    let (slot, name) = rest.split_once('.')?;
    Some((name, slot.parse().ok()?))
}

/// A rule a schedule breaks: which field, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn field(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks a schedule against every rule (`min_interval_ms`: the node's
/// `--min-schedule-interval`); returns its parsed expression. The first broken rule is
/// returned.
pub fn validate_spec(
    s: &ScheduleSpec,
    min_interval_ms: Millis,
) -> Result<CronSchedule, FieldError> {
    if !valid_ident(&s.name) || s.name.len() > MAX_NAME_LEN {
        return Err(field(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"),
        ));
    }
    let parsed = CronSchedule::parse(&s.cron, &s.tz).map_err(|e| match e {
        CronError::UnknownZone(_) => field(
            "tz",
            e.to_string()
                .strip_prefix("tz: ")
                .unwrap_or_default()
                .to_string(),
        ),
        other => field(
            "cron",
            other
                .to_string()
                .strip_prefix("cron: ")
                .unwrap_or_default()
                .to_string(),
        ),
    })?;
    // Sampled from a fixed instant, so that the verdict does not depend on when it is asked.
    let shortest = parsed.min_interval(0, 1000);
    if let Some(gap) = shortest
        && gap < min_interval_ms
    {
        return Err(field(
            "cron",
            format!(
                "fires every {}s at times; this cluster allows at most one firing per {}s \
                 (--min-schedule-interval)",
                gap as f64 / 1000.0,
                min_interval_ms as f64 / 1000.0
            ),
        ));
    }
    if s.grace_secs > MAX_DELAY_SECS {
        return Err(field("grace_secs", format!("at most {MAX_DELAY_SECS}s")));
    }
    if s.jitter_secs > MAX_DELAY_SECS {
        return Err(field("jitter_secs", format!("at most {MAX_DELAY_SECS}s")));
    }
    if let Some(gap) = shortest
        && s.jitter_secs * 1000 >= gap
    {
        return Err(field(
            "jitter_secs",
            "must be shorter than the shortest time between two slots",
        ));
    }
    if let Missed::CatchUp(n) = s.missed
        && !(1..=MAX_CATCH_UP).contains(&n)
    {
        return Err(field(
            "missed",
            format!("catch_up must be between 1 and {MAX_CATCH_UP}"),
        ));
    }
    match &s.what {
        What::Job(j) => {
            crate::jobs::validate_submit(&j.submission()).map_err(|e| {
                let m = e.to_string();
                field("what.job", m)
            })?;
            if j.all && j.selector.is_empty() {
                return Err(field("what.job", "all needs a selector"));
            }
        }
        What::Rollout(r) => {
            crate::rollout::validate_spec(r).map_err(|e| field("what.rollout", e.to_string()))?;
        }
    }
    Ok(parsed)
}

/// A schedule called `name` that starts `job` at `cron` in UTC, every other field as most unit
/// tests want it (overlap allowed, one catch-up, a minute's grace, no jitter, not paused).
#[cfg(test)]
pub(crate) fn test_spec(name: &str, cron: &str, job: JobSpec) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        cron: cron.into(),
        tz: "UTC".into(),
        what: What::Job(job),
        overlap: Overlap::Allow,
        missed: Missed::Once,
        grace_secs: 60,
        jitter_secs: 0,
        paused: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(cron: &str) -> ScheduleSpec {
        let job = JobSpec {
            command: Some("true".into()),
            ..JobSpec::default()
        };
        test_spec("nightly", cron, job)
    }

    #[test]
    fn refusals_name_their_field() {
        let f = |s: &ScheduleSpec| validate_spec(s, 60_000).unwrap_err();
        let e = f(&spec("61 * * * *"));
        assert_eq!(e.field, "cron");
        assert!(e.message.contains("minute"), "{e}");
        // Every minute is allowed at the default minimum, every ten seconds only below it.
        assert!(validate_spec(&spec("* * * * *"), 60_000).is_ok());
        assert!(validate_spec(&spec("*/10 * * * * *"), 1000).is_ok());
        let e = f(&spec("*/10 * * * * *"));
        assert!(e.message.contains("--min-schedule-interval"), "{e}");
        let mut s = spec("0 * * * *");
        s.tz = "Europe/Nowhere".into();
        assert_eq!(f(&s).field, "tz");
        let mut s = spec("0 * * * *");
        s.name = "x".repeat(64);
        assert_eq!(f(&s).field, "name");
        let mut s = spec("0 * * * *");
        s.missed = Missed::CatchUp(0);
        assert_eq!(f(&s).field, "missed");
        let mut s = spec("0 * * * *");
        s.jitter_secs = 3600;
        assert_eq!(f(&s).field, "jitter_secs");
        let mut s = spec("0 * * * *");
        s.what = What::Job(JobSpec::default());
        assert_eq!(f(&s).field, "what.job");
        assert!(validate_spec(&spec("@hourly"), 60_000).is_ok());
        // A rollout is checked by the rollout module's rules, under what.rollout.
        let mut s = spec("0 * * * *");
        s.what = What::Rollout(crate::rollout::RolloutSpec {
            command: Some("true".into()),
            ..Default::default()
        });
        let e = f(&s);
        assert_eq!(e.field, "what.rollout");
        assert!(e.message.contains("selector"), "{e}");
        s.what = What::Rollout(crate::rollout::RolloutSpec {
            command: Some("true".into()),
            selector: Selector::parse("role=web").unwrap(),
            max_concurrency: Some(crate::rollout::LimitSpec::Text("0".into())),
            ..Default::default()
        });
        assert!(f(&s).message.contains("max_concurrency"));
    }

    #[test]
    fn specs_read_from_json_and_toml_with_defaults() {
        let s: ScheduleSpec = serde_json::from_value(serde_json::json!({
            "name": "n", "cron": "@daily",
            "what": {"job": {"command": "true", "selector": "role=web", "all": true}},
            "missed": {"catch_up": 3}, "overlap": "queue"
        }))
        .unwrap();
        assert_eq!(s.tz, "UTC");
        assert_eq!(s.missed, Missed::CatchUp(3));
        assert_eq!(s.overlap, Overlap::Queue);
        assert_eq!(s.grace_secs, DEFAULT_GRACE_SECS);
        assert!(s.job().unwrap().all);
        let e = serde_json::from_value::<ScheduleSpec>(serde_json::json!({
            "name": "n", "cron": "@daily", "what": {"job": {"command": "true"}}, "bogus": 1
        }))
        .unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_a_valid_schedule() {
        let s: ScheduleSpec =
            serde_json::from_str(include_str!("../../../examples/schedule.json")).unwrap();
        validate_spec(&s, DEFAULT_MIN_INTERVAL_MS).unwrap();
        assert_eq!(s.missed, Missed::Once);
        assert!(s.job().unwrap().all);
    }

    #[test]
    fn slot_groups_round_trip_and_runs_are_bounded() {
        let g = slot_group("a.b-c", 1_700_000_000_000);
        assert!(valid_ident(&g));
        assert_eq!(parse_slot_group(&g), Some(("a.b-c", 1_700_000_000_000)));
        assert_eq!(parse_slot_group(&trigger_group("a")), None);
        assert!(valid_ident(&slot_group(
            &"x".repeat(MAX_NAME_LEN),
            u64::MAX
        )));
        let mut st = ScheduleStatus::default();
        for i in 0..(MAX_RUNS as u64 + 5) {
            st.push_run(Run {
                slot: Some(i),
                fired_at: i,
                group: slot_group("n", i),
                jobs: vec![],
                rollout: None,
                error: None,
                skipped: false,
                by: "leader".into(),
            });
        }
        assert_eq!(st.runs.len(), MAX_RUNS);
        assert_eq!(st.runs[0].slot, Some(5));
    }
}
