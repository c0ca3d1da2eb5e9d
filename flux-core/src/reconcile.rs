//! Desired-state reconciliation: storing states with CAS, planning and applying a whole
//! `state.toml`, and the leader's loop that converges every target agent.
//!
//! Per (state, agent) the reconciler keeps a [`TargetStatus`] record and runs rounds of
//! `check` → (`apply` → `check` to verify). Each step is an ordinary job pinned to the agent.
//! The decision of what to do next is the pure [`step`] function; [`Reconciler::pass`] only
//! reads, submits and writes.
//!
//! Guarantees:
//! - a step's job is created in the same store transaction as the status record that points at
//!   it, fenced by the leader's epoch and conditional on the record's and the state's versions:
//!   either both exist or neither does, so a leader that dies at any point leaves its successor
//!   a record to continue from, and no job a record does not know about. A repair is neither
//!   lost nor run twice, and a state deleted meanwhile gets no new job;
//! - reconciler jobs have a single attempt: an apply interrupted by a lost agent is not re-run
//!   blindly, the next round checks first;
//! - a failing target backs off exponentially (from its interval up to an hour);
//! - two applies that race cannot silently overwrite each other: every write of a state is a CAS
//!   on its version, and an apply may state the versions it planned against.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::jobs::{JobError, Jobs};
use crate::model::{Agent, AgentState, Job, JobStatus, Millis, SubmitJob};
use crate::state::{FieldChange, StateSpec, StoredState, diff_specs, validate_set, validate_spec};
use crate::store::{DynStore, Epoch, Expect, Key, StoreError, Txn, Version};

/// Events kept per target.
pub const MAX_EVENTS: usize = 20;
/// Output kept from a failed check or apply.
pub const OUTPUT_TAIL_BYTES: usize = 4096;
/// Longest back-off between attempts on a failing target.
pub const MAX_BACKOFF_MS: u64 = 3_600_000;

/// Who reconciler jobs are submitted as.
pub const RECONCILER: &str = "reconciler";

// Old paths, kept for the other crates until they move (layout).
pub use crate::keys;

/// Where a target stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

impl TargetState {
    pub const ALL: [TargetState; 5] = [
        TargetState::Unknown,
        TargetState::Compliant,
        TargetState::Drifted,
        TargetState::Applying,
        TargetState::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Unknown => "unknown",
            TargetState::Compliant => "compliant",
            TargetState::Drifted => "drifted",
            TargetState::Applying => "applying",
            TargetState::Failed => "failed",
        }
    }
}

/// Which job of a round.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepKind {
    Check,
    Apply,
    Verify,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Check => "check",
            StepKind::Apply => "apply",
            StepKind::Verify => "verify",
        }
    }
}

/// The job a target is waiting for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlight {
    pub kind: StepKind,
    pub job_id: String,
}

/// Something that happened to a target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at: Millis,
    /// `checked`, `drift`, `applying`, `repaired`, `failed`, `compliant`.
    pub kind: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
}

/// Reconciliation record of one (state, agent).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_flight: Option<InFlight>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check: Option<Millis>,
    /// When `status` last changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_change: Option<Millis>,
    /// When the next round is due.
    pub next_check: Millis,
    /// Failed rounds in a row (drives the back-off).
    pub failures: u32,
    /// Drifts repaired so far.
    pub repairs: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Tail of the output of the job that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_job: Option<String>,
    #[serde(default)]
    pub events: Vec<Event>,
    /// Liveness of the target's agent (`online`, `unreachable`, `dead`, `unregistered`), filled in
    /// when the record is read through the API; not stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
            agent_state: None,
        }
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

    fn event(&mut self, now: Millis, kind: &str, message: String, job_id: Option<&str>) {
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
}

impl Tally {
    fn add(&mut self, o: Tally) {
        self.checks += o.checks;
        self.drifts += o.drifts;
        self.repairs += o.repairs;
        self.failures += o.failures;
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

/// Errors of the state service.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// The state changed under the caller (a concurrent write, or a plan gone stale).
    #[error("{0}")]
    Conflict(String),
    /// The version the caller named (`If-Match`, `If-None-Match`) is not the one stored.
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Jobs(JobError),
}

impl From<StoreError> for StateError {
    fn from(e: StoreError) -> StateError {
        match e {
            StoreError::InvalidKey(m) => StateError::Invalid(m),
            other => StateError::Store(other),
        }
    }
}

impl From<JobError> for StateError {
    fn from(e: JobError) -> StateError {
        match e {
            JobError::Store(s) => StateError::Store(s),
            other => StateError::Jobs(other),
        }
    }
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// A state with its version and the status of every target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateView {
    pub name: String,
    pub version: Version,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub updated_by: String,
    pub spec: StateSpec,
    /// One record per target agent.
    pub status: Vec<TargetStatus>,
}

impl StateView {
    /// Targets per status.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut m = BTreeMap::new();
        for t in &self.status {
            *m.entry(t.status.as_str()).or_default() += 1;
        }
        m
    }
}

/// Body of `POST /v1/states/apply`: a whole set of states, from a TOML file or as JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The text of a `state.toml` (errors then name `file`, line and field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toml: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub states: Option<Vec<StateSpec>>,
    /// Delete the tenant's states that the set does not declare.
    #[serde(default)]
    pub prune: bool,
    /// Compute the plan only.
    #[serde(default)]
    pub dry_run: bool,
    /// Versions the caller planned against (0 = absent); a state found at another version makes
    /// the apply fail with a conflict and change nothing.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub expect: BTreeMap<String, Version>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Unchanged,
    Delete,
}

/// One line of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanItem {
    pub name: String,
    pub action: Action,
    /// Version before (0 = absent).
    pub from_version: Version,
    /// Version after applying (0 = deleted; unknown in a dry run of a change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_version: Option<Version>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// What an apply did, or would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub dry_run: bool,
    pub items: Vec<PlanItem>,
}

impl Plan {
    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.items.iter().any(|i| i.action != Action::Unchanged)
    }
}

/// The state service and reconciler. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Reconciler {
    store: DynStore,
    jobs: Jobs,
}

fn key(tenant: &str, path: String) -> Result<Key> {
    Ok(Key::new(tenant, path)?)
}

fn dec<T: serde::de::DeserializeOwned>(k: &Key, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StateError::Corrupt {
        key: k.to_string(),
        reason: e.to_string(),
    })
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state types always serialize")
}

fn invalid_spec(s: &StateSpec) -> Result<()> {
    validate_spec(s)
        .map_err(|e| StateError::Invalid(format!("state {:?}: {}: {}", s.name, e.field, e.message)))
}

impl Reconciler {
    pub fn new(store: DynStore, jobs: Jobs) -> Reconciler {
        Reconciler { store, jobs }
    }

    async fn states(&self, tenant: &str) -> Result<BTreeMap<String, (StoredState, Version)>> {
        self.store
            .list(tenant, keys::STATES)
            .await?
            .into_iter()
            .map(|e| {
                let s: StoredState = dec(&e.key, &e.value)?;
                Ok((s.spec.name.clone(), (s, e.version)))
            })
            .collect()
    }

    async fn statuses(&self, tenant: &str, prefix: &str) -> Result<Vec<(TargetStatus, Version)>> {
        self.store
            .list(tenant, prefix)
            .await?
            .into_iter()
            .map(|e| Ok((dec(&e.key, &e.value)?, e.version)))
            .collect()
    }

    fn view(
        name: &str,
        s: &StoredState,
        version: Version,
        agents: &[Agent],
        statuses: &BTreeMap<(String, String), TargetStatus>,
    ) -> StateView {
        let targets = target_ids(&s.spec, agents)
            .into_iter()
            .map(|a| {
                statuses
                    .get(&(name.to_string(), a.clone()))
                    .cloned()
                    .unwrap_or_else(|| TargetStatus::new(name, &a, 0))
            })
            .map(|mut t| {
                t.agent_state = Some(
                    agents
                        .iter()
                        .find(|x| x.node_id == t.agent)
                        .map_or("unregistered", |x| x.state.as_str())
                        .to_string(),
                );
                t
            })
            .collect();
        StateView {
            name: name.to_string(),
            version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            updated_by: s.updated_by.clone(),
            spec: s.spec.clone(),
            status: targets,
        }
    }

    /// Every state of a tenant with its targets' status.
    pub async fn list(&self, tenant: &str) -> Result<Vec<StateView>> {
        let states = self.states(tenant).await?;
        let agents = self.jobs.agents(tenant).await?;
        let statuses: BTreeMap<(String, String), TargetStatus> = self
            .statuses(tenant, keys::STATUSES)
            .await?
            .into_iter()
            .map(|(t, _)| ((t.state.clone(), t.agent.clone()), t))
            .collect();
        Ok(states
            .iter()
            .map(|(n, (s, v))| Self::view(n, s, *v, &agents, &statuses))
            .collect())
    }

    /// One state with its targets' status.
    pub async fn get(&self, tenant: &str, name: &str) -> Result<StateView> {
        let (s, v) = self.load(tenant, name).await?;
        let agents = self.jobs.agents(tenant).await?;
        let statuses = self
            .statuses(tenant, &keys::statuses(name))
            .await?
            .into_iter()
            .map(|(t, _)| ((t.state.clone(), t.agent.clone()), t))
            .collect();
        Ok(Self::view(name, &s, v, &agents, &statuses))
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<(StoredState, Version)> {
        if !crate::model::valid_ident(name) {
            return Err(StateError::NotFound(format!("state {name}")));
        }
        let k = key(tenant, keys::state(name))?;
        match self.store.get(&k).await? {
            Some(v) => Ok((dec(&k, &v.value)?, v.version)),
            None => Err(StateError::NotFound(format!("state {name}"))),
        }
    }

    /// Creates or replaces one state. `expect` is the version the caller last saw (`Absent` to
    /// create only, `Any` to overwrite whatever is there). Returns the new version and whether
    /// it was created.
    pub async fn put(
        &self,
        tenant: &str,
        by: &str,
        spec: StateSpec,
        expect: Expect,
        now: Millis,
    ) -> Result<(Version, bool)> {
        invalid_spec(&spec)?;
        let k = key(tenant, keys::state(&spec.name))?;
        let current = self.store.get(&k).await?;
        let (created_at, cas) = match (&current, expect) {
            (Some(v), _) => (
                dec::<StoredState>(&k, &v.value)?.created_at,
                match expect {
                    Expect::Any => Expect::Version(v.version),
                    e => e,
                },
            ),
            (None, Expect::Any) => (now, Expect::Absent),
            (None, e) => (now, e),
        };
        if let Some(cur) = &current
            && cas.admits(Some(cur.version))
            && dec::<StoredState>(&k, &cur.value)?.spec == spec
        {
            // Nothing changes: no new version, no re-check of every target.
            return Ok((cur.version, false));
        }
        let stored = StoredState {
            spec,
            created_at,
            updated_at: now,
            updated_by: by.to_string(),
        };
        let name = stored.spec.name.clone();
        match self.store.put(k, enc(&stored), cas).await {
            Ok(v) => Ok((v, current.is_none())),
            Err(StoreError::Conflict { found, .. }) if expect != Expect::Any => {
                Err(StateError::PreconditionFailed(match found {
                    Some(v) => {
                        format!("state {name} is at version {v}, not as expected ({expect})")
                    }
                    None => format!("state {name} does not exist, not as expected ({expect})"),
                }))
            }
            Err(StoreError::Conflict { .. }) => Err(StateError::Conflict(format!(
                "state {name} was written by someone else at the same moment; retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a state and its targets' records.
    pub async fn delete(&self, tenant: &str, name: &str, expect: Expect) -> Result<Version> {
        let (_, v) = self.load(tenant, name).await?;
        if let Expect::Version(e) = expect
            && e != v
        {
            return Err(StateError::PreconditionFailed(format!(
                "state {name} is at version {v}, not {e}"
            )));
        }
        let mut txn = Txn::new().delete(key(tenant, keys::state(name))?, Expect::Version(v));
        for e in self.store.list(tenant, &keys::statuses(name)).await? {
            txn = txn.delete(e.key, Expect::Any);
        }
        match self.store.commit(txn).await {
            Ok(_) => Ok(v),
            Err(StoreError::Conflict { .. }) => Err(StateError::Conflict(format!(
                "state {name} changed while being deleted; retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Plans and (unless a dry run) applies a whole set of states in one transaction.
    pub async fn apply(
        &self,
        tenant: &str,
        by: &str,
        req: ApplyRequest,
        now: Millis,
    ) -> Result<Plan> {
        let specs = match (&req.toml, req.states) {
            (Some(text), None) => {
                let file = req.file.as_deref().unwrap_or("state.toml");
                crate::state::parse_state_file(file, text)
                    .map_err(|e| StateError::Invalid(e.to_string()))?
            }
            (None, Some(s)) => {
                validate_set(&s).map_err(StateError::Invalid)?;
                s
            }
            _ => {
                return Err(StateError::Invalid(
                    "give either toml (the text of a state file) or states".into(),
                ));
            }
        };
        let current = self.states(tenant).await?;
        for (name, want) in &req.expect {
            let have = current.get(name).map_or(0, |(_, v)| *v);
            if have != *want {
                return Err(StateError::Conflict(format!(
                    "state {name} is at version {have}, not {want} as planned; run diff again"
                )));
            }
        }
        let mut items = Vec::new();
        let mut txn = Txn::new();
        let declared: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        for spec in &specs {
            let k = key(tenant, keys::state(&spec.name))?;
            match current.get(&spec.name) {
                None => {
                    items.push(PlanItem {
                        name: spec.name.clone(),
                        action: Action::Create,
                        from_version: 0,
                        to_version: None,
                        changes: Vec::new(),
                    });
                    let stored = StoredState {
                        spec: spec.clone(),
                        created_at: now,
                        updated_at: now,
                        updated_by: by.to_string(),
                    };
                    txn = txn.put(k, enc(&stored), Expect::Absent);
                }
                Some((old, v)) => {
                    let changes = diff_specs(&old.spec, spec);
                    if changes.is_empty() {
                        items.push(PlanItem {
                            name: spec.name.clone(),
                            action: Action::Unchanged,
                            from_version: *v,
                            to_version: Some(*v),
                            changes,
                        });
                        // Still part of the snapshot the apply is based on.
                        txn = txn.check(k, Expect::Version(*v));
                        continue;
                    }
                    items.push(PlanItem {
                        name: spec.name.clone(),
                        action: Action::Update,
                        from_version: *v,
                        to_version: None,
                        changes,
                    });
                    let stored = StoredState {
                        spec: spec.clone(),
                        created_at: old.created_at,
                        updated_at: now,
                        updated_by: by.to_string(),
                    };
                    txn = txn.put(k, enc(&stored), Expect::Version(*v));
                }
            }
        }
        if req.prune {
            for (name, (_, v)) in &current {
                if declared.contains(name.as_str()) {
                    continue;
                }
                if !req.expect.is_empty() && !req.expect.contains_key(name) {
                    return Err(StateError::Conflict(format!(
                        "state {name} appeared after the plan was made and would be pruned unseen; run diff again"
                    )));
                }
                items.push(PlanItem {
                    name: name.clone(),
                    action: Action::Delete,
                    from_version: *v,
                    to_version: Some(0),
                    changes: Vec::new(),
                });
                txn = txn.delete(key(tenant, keys::state(name))?, Expect::Version(*v));
                for e in self.store.list(tenant, &keys::statuses(name)).await? {
                    txn = txn.delete(e.key, Expect::Any);
                }
            }
        }
        let plan_changes = items.iter().any(|i| i.action != Action::Unchanged);
        if req.dry_run || !plan_changes {
            return Ok(Plan {
                dry_run: req.dry_run,
                items,
            });
        }
        let rev = match self.store.commit(txn).await {
            Ok(r) => r,
            Err(StoreError::Conflict { key, .. }) => {
                return Err(StateError::Conflict(format!(
                    "{key} changed while this apply was being planned; run it again"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        for i in &mut items {
            if matches!(i.action, Action::Create | Action::Update) {
                i.to_version = Some(rev);
            }
        }
        Ok(Plan {
            dry_run: false,
            items,
        })
    }

    // ---- leader: the reconcile loop --------------------------------------------------------

    /// One reconcile pass over a tenant: for every (state, target agent) decide the next step,
    /// submit what it needs and record it; drop records of targets that no longer exist.
    pub async fn pass(&self, tenant: &str, epoch: Epoch, now: Millis) -> Result<Tally> {
        let states = self.states(tenant).await?;
        let statuses = self.statuses(tenant, keys::STATUSES).await?;
        if states.is_empty() && statuses.is_empty() {
            return Ok(Tally::default());
        }
        let agents = self.jobs.agents(tenant).await?;
        let mut by_target: BTreeMap<(String, String), (TargetStatus, Version)> = statuses
            .into_iter()
            .map(|(t, v)| ((t.state.clone(), t.agent.clone()), (t, v)))
            .collect();
        let mut tally = Tally::default();
        for (name, (stored, version)) in &states {
            for agent in target_ids(&stored.spec, &agents) {
                let online = agents
                    .iter()
                    .any(|a| a.node_id == agent && a.state == AgentState::Online);
                let (cur, sv) = by_target
                    .remove(&(name.clone(), agent.clone()))
                    .map_or_else(
                        || (TargetStatus::new(name, &agent, now), None),
                        |(t, v)| (t, Some(v)),
                    );
                match self
                    .advance(tenant, epoch, &stored.spec, *version, cur, sv, online, now)
                    .await
                {
                    Ok(t) => tally.add(t),
                    // Another writer moved the record; the next pass looks again.
                    Err(StateError::Store(StoreError::Conflict { .. })) => {}
                    Err(StateError::Jobs(e)) => {
                        tracing::warn!(state = %name, agent = %agent, error = %e, "reconcile step failed");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        // Records of targets that are gone (state deleted, agent no longer matching).
        for ((_, _), (t, v)) in by_target {
            let k = key(tenant, keys::status(&t.state, &t.agent))?;
            match self
                .store
                .commit(Txn::new().fenced(epoch).delete(k, Expect::Version(v)))
                .await
            {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(tally)
    }

    #[allow(clippy::too_many_arguments)]
    async fn advance(
        &self,
        tenant: &str,
        epoch: Epoch,
        spec: &StateSpec,
        version: Version,
        cur: TargetStatus,
        stored_version: Option<Version>,
        online: bool,
        now: Millis,
    ) -> Result<Tally> {
        let job = match &cur.in_flight {
            None => None,
            Some(f) => match self.jobs.get(tenant, &f.job_id).await {
                Ok(j) => {
                    let mut v = JobView::of(&j);
                    // An apply fails on any non-zero exit; a check on any other than desired.
                    let wanted = match f.kind {
                        StepKind::Apply => 0,
                        _ => spec.desired_exit_code,
                    };
                    if j.status.is_terminal() && j.exit_code != Some(wanted) {
                        v.output = self.output_tail(tenant, &j).await?;
                    }
                    Some(v)
                }
                Err(JobError::NotFound(_)) => None,
                Err(e) => return Err(e.into()),
            },
        };
        let (mut next, tally, submit) = match step(&cur, spec, version, online, job.as_ref(), now) {
            Step::Wait => return Ok(Tally::default()),
            Step::Save(s, t) => (s, t, None),
            Step::Submit(kind, s, t) => (s, t, Some(kind)),
        };
        let mut txn = Txn::new();
        if let Some(kind) = submit {
            let command = match kind {
                StepKind::Check | StepKind::Verify => &spec.check,
                StepKind::Apply => &spec.apply,
            };
            let req = SubmitJob {
                command: Some(command.clone()),
                node_id: Some(next.agent.clone()),
                env: spec.env.clone(),
                timeout_secs: Some(spec.timeout_secs),
                max_attempts: Some(1),
                ..SubmitJob::default()
            };
            let (job, job_txn) = self.jobs.prepare_submit(tenant, RECONCILER, &req, now)?;
            if kind == StepKind::Apply {
                next.event(now, "applying", "apply submitted".into(), Some(&job.job_id));
            }
            next.in_flight = Some(InFlight {
                kind,
                job_id: job.job_id,
            });
            // The job exists only if the record pointing at it does, and only while the
            // state is still at the version the step was decided on.
            txn = job_txn.check(
                key(tenant, keys::state(&spec.name))?,
                Expect::Version(version),
            );
        }
        let k = key(tenant, keys::status(&next.state, &next.agent))?;
        let expect = stored_version.map_or(Expect::Absent, Expect::Version);
        self.store
            .commit(txn.fenced(epoch).put(k, enc(&next), expect))
            .await?;
        Ok(tally)
    }

    async fn output_tail(&self, tenant: &str, job: &Job) -> Result<Option<String>> {
        let Some(att) = &job.current_attempt else {
            return Ok(None);
        };
        let chunks = self.jobs.output(tenant, att, 0).await?;
        let mut text: String = chunks.iter().map(|c| c.data.as_str()).collect();
        if text.len() > OUTPUT_TAIL_BYTES {
            let mut cut = text.len() - OUTPUT_TAIL_BYTES;
            while !text.is_char_boundary(cut) {
                cut += 1;
            }
            text = format!("…{}", &text[cut..]);
        }
        Ok((!text.is_empty()).then_some(text))
    }

    /// Targets per status over every state of a tenant (for metrics).
    pub async fn counts(&self, tenant: &str) -> Result<BTreeMap<TargetState, usize>> {
        let mut m = BTreeMap::new();
        for v in self.list(tenant).await? {
            for t in v.status {
                *m.entry(t.status).or_default() += 1;
            }
        }
        Ok(m)
    }
}

/// The agents a state targets, in id order: the named ones (registered or not), or the
/// registered agents its labels select.
pub fn target_ids(spec: &StateSpec, agents: &[Agent]) -> Vec<String> {
    if !spec.targets.agents.is_empty() {
        let mut v = spec.targets.agents.clone();
        v.sort();
        return v;
    }
    let mut v: Vec<String> = agents
        .iter()
        .filter(|a| spec.targets.matches(&a.node_id, &a.labels))
        .map(|a| a.node_id.clone())
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Targets;

    fn spec() -> StateSpec {
        StateSpec {
            name: "motd".into(),
            targets: Targets {
                agents: vec!["a1".into()],
                labels: BTreeMap::new(),
            },
            check: "check".into(),
            apply: "apply".into(),
            interval_secs: 10,
            timeout_secs: 5,
            env: BTreeMap::new(),
            desired_exit_code: 0,
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
        assert!(t.message.unwrap().contains("check did not complete"));
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
    fn events_are_bounded() {
        let mut t = TargetStatus::new("s", "a", 0);
        for i in 0..(MAX_EVENTS as u64 + 5) {
            t.event(i, "checked", format!("{i}"), None);
        }
        assert_eq!(t.events.len(), MAX_EVENTS);
        assert_eq!(t.events[0].message, "5");
    }
}
