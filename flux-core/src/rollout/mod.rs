//! Rollouts: one command run across a fleet at a controlled rate, with canaries and an error
//! budget, as a stored object that the leader drives (not a client loop).
//!
//! A rollout's targets are resolved from its selector (or its explicit node list) when it is
//! created, and recorded in the rollout; agents that match later are not added. The decision
//! of what to do next is the pure [`policy::step`]; the leader's [`driver`] reads, decides and
//! commits. The service here creates, reads, lists, pauses, resumes, cancels and retries them;
//! [`Rollouts::create`] takes a plain [`RolloutSpec`], so a schedule may start one too.
//!
//! Guarantees:
//! - creation is one transaction (record and the marker of an unfinished rollout); a refused
//!   spec (bad limit, no target, unknown field) creates nothing and names the field;
//! - every change of a rollout is a CAS on its record's version; the leader's changes are also
//!   fenced by its epoch, and a target's job is created in the same transaction as the record
//!   that says it started: a target is never started twice, and never more than
//!   `max_concurrency` run, across leader changes too;
//! - rollout jobs are ordinary jobs pinned to their target (kind `rollout`, group = the
//!   rollout id) with a single attempt: a lost agent is an error, not a re-run;
//! - listing reads at most `limit` records (`list_range`).

pub mod driver;
pub mod policy;

pub use policy::{
    Action, JobEnd, Limit, OnHalt, Params, RolloutStatus, RolloutView, Target, TargetState,
    concurrency, step,
};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::jobs::{JobError, Jobs, validate_submit};
use crate::keys;
use crate::model::{Agent, Millis, SubmitJob, valid_ident};
use crate::selector::Selector;
use crate::store::{DynStore, Expect, Key, Range, StoreError, Txn, Version};

/// Most targets of one rollout (its record holds them all).
pub const MAX_TARGETS: usize = 1000;
/// Longest `batch_wait_secs` (a day).
pub const MAX_BATCH_WAIT_SECS: u64 = 24 * 3600;
/// Most rollouts in one page of a listing.
pub const MAX_LIST: usize = 1000;
const CAS_RETRIES: usize = 16;

/// Most unfinished rollouts (running, paused) one tenant may have; creating one more is a 409
/// naming `max_unfinished_rollouts`. Bounds the leader's pass, which visits every one.
pub const MAX_UNFINISHED: usize = 1000;

/// Errors of the rollout service.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("{0} not found")]
    NotFound(String),
    /// A bad spec or request; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// The rollout is not in a state that allows this (pausing a finished one, say).
    #[error("{0}")]
    Conflict(String),
    #[error("corrupt object {key}: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Jobs(JobError),
    #[error(transparent)]
    Store(StoreError),
}

crate::error::from_store_error!(RolloutError);

impl From<JobError> for RolloutError {
    fn from(e: JobError) -> RolloutError {
        match e {
            JobError::Invalid(m) => RolloutError::Invalid(m),
            JobError::Store(s) => RolloutError::Store(s),
            other => RolloutError::Jobs(other),
        }
    }
}

pub type Result<T, E = RolloutError> = std::result::Result<T, E>;

/// A limit as written in a spec: a count (`3`) or a string (`"3"`, `"10%"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LimitSpec {
    Count(u64),
    Text(String),
}

impl LimitSpec {
    fn parse(&self) -> std::result::Result<Limit, String> {
        match self {
            LimitSpec::Count(n) => u32::try_from(*n)
                .map(Limit::Count)
                .map_err(|_| format!("{n} is too large")),
            LimitSpec::Text(s) if s.len() <= 16 => Limit::parse(s),
            LimitSpec::Text(_) => Err("too long".to_string()),
        }
    }
}

impl std::fmt::Display for LimitSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitSpec::Count(n) => write!(f, "{n}"),
            LimitSpec::Text(s) => write!(f, "{s}"),
        }
    }
}

/// Reads `max_concurrency` and `max_errors` as written, with the rules every rollout (ad hoc,
/// or a desired state's) follows: a count or a percentage of 1% to 100%, a concurrency of at
/// least 1; absent, a concurrency of 1 and no error allowed. A refusal names its field
/// (`(field, message)`). Pure.
pub fn parse_limits(
    max_concurrency: Option<&LimitSpec>,
    max_errors: Option<&LimitSpec>,
) -> std::result::Result<(Limit, Limit), (&'static str, String)> {
    let conc = match max_concurrency {
        Some(l) => l.parse().map_err(|m| ("max_concurrency", m))?,
        None => Limit::Count(1),
    };
    if conc == Limit::Count(0) {
        return Err((
            "max_concurrency",
            "must be at least 1 (or a percentage of 1% to 100%)".into(),
        ));
    }
    let errors = match max_errors {
        Some(l) => l.parse().map_err(|m| ("max_errors", m))?,
        None => Limit::Count(0),
    };
    Ok((conc, errors))
}

/// What a rollout runs and how (the body of `POST /v1/rollouts`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Shell command line run on each target.
    pub command: Option<String>,
    /// Program and arguments, run without a shell.
    pub argv: Option<Vec<String>>,
    /// The targets: the tenant's agents this selector matches when the rollout is created.
    #[serde(default, skip_serializing_if = "Selector::is_empty")]
    pub selector: Selector,
    /// Or the targets named (a retry names the targets it runs again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    pub workdir: Option<String>,
    /// Per target: its job (and its verify job) is killed after this long; a timeout is an
    /// error.
    pub timeout_secs: Option<u64>,
    /// Targets running at once: a count, or a percentage of the targets (rounded up, at least
    /// 1). Default 1.
    pub max_concurrency: Option<LimitSpec>,
    /// Errors tolerated over the whole rollout (count or percentage, rounded up); one more
    /// halts it. Default 0: the first error halts.
    pub max_errors: Option<LimitSpec>,
    /// That many targets run first, alone; any canary error halts the rollout.
    pub canary: Option<u32>,
    /// Shell command run on each target after its job succeeded; its failure is an error.
    pub verify: Option<String>,
    /// Pause between batches of `max_concurrency` targets; none: a sliding window.
    pub batch_wait_secs: Option<u64>,
    /// Count a target offline at its turn as an error (it is `skipped` either way).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub offline_is_error: bool,
    /// What happens to running targets when the budget is spent: `wait` (default) or
    /// `cancel`.
    #[serde(default)]
    pub on_halt: OnHalt,
}

/// A rollout as stored and as returned by the API.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub rollout_id: String,
    pub tenant: String,
    pub status: RolloutStatus,
    /// Why it halted (the budget, a canary).
    pub halt_reason: Option<String>,
    /// The rollout this one retries.
    pub retry_of: Option<String>,
    /// The rollout that retries this one: a rollout is retried once, so its targets never
    /// run in two retries at the same time.
    pub retried_by: Option<String>,
    /// The run of a schedule that started it (`s.<slot>.<name>` for a slot's).
    pub group: Option<String>,
    pub spec: RolloutSpec,
    pub params: Params,
    pub targets: Vec<Target>,
    pub created_by: String,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub finished_at: Option<Millis>,
}

/// One line of a listing: a rollout without its targets, with their counts by state.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolloutSummary {
    pub rollout_id: String,
    pub status: RolloutStatus,
    pub halt_reason: Option<String>,
    pub retry_of: Option<String>,
    pub group: Option<String>,
    pub command: String,
    pub targets: usize,
    pub counts: BTreeMap<TargetState, usize>,
    pub params: Params,
    pub created_by: String,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
}

impl Rollout {
    /// Targets per state.
    pub fn counts(&self) -> BTreeMap<TargetState, usize> {
        let mut m = BTreeMap::new();
        for t in &self.targets {
            *m.entry(t.state).or_default() += 1;
        }
        m
    }

    pub fn summary(&self) -> RolloutSummary {
        RolloutSummary {
            rollout_id: self.rollout_id.clone(),
            status: self.status,
            halt_reason: self.halt_reason.clone(),
            retry_of: self.retry_of.clone(),
            group: self.group.clone(),
            command: command_text(&self.spec),
            targets: self.targets.len(),
            counts: self.counts(),
            params: self.params.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            finished_at: self.finished_at,
        }
    }

    /// The job request of one target's run (`verify == false`) or verify.
    pub fn job_request(&self, node_id: &str, verify: bool) -> SubmitJob {
        job_request(&self.spec, node_id, verify)
    }
}

fn command_text(spec: &RolloutSpec) -> String {
    match (&spec.command, &spec.argv) {
        (Some(c), _) => c.clone(),
        (None, Some(a)) => a.join(" "),
        _ => String::new(),
    }
}

fn job_request(spec: &RolloutSpec, node_id: &str, verify: bool) -> SubmitJob {
    let (command, argv) = match (verify, &spec.verify) {
        (true, Some(v)) => (Some(v.clone()), None),
        _ => (spec.command.clone(), spec.argv.clone()),
    };
    SubmitJob {
        command,
        argv,
        node_id: Some(node_id.to_string()),
        env: spec.env.clone(),
        workdir: spec.workdir.clone(),
        timeout_secs: spec.timeout_secs,
        max_attempts: Some(1),
        // The target was resolved from registered agents; it may have been collected since.
        allow_unknown_node: true,
        ..SubmitJob::default()
    }
}

/// Checks a spec (every refusal names its field) and returns its parameters before they are
/// resolved over the targets: concurrency and errors as limits. Pure.
pub fn validate_spec(spec: &RolloutSpec) -> Result<(Limit, Limit)> {
    let job = job_request(spec, "validation", false);
    validate_submit(&job)?;
    if let Some(v) = &spec.verify {
        if v.trim().is_empty() {
            return Err(RolloutError::Invalid("verify must not be empty".into()));
        }
        validate_submit(&job_request(spec, "validation", true))
            .map_err(|e| RolloutError::Invalid(format!("verify: {e}")))?;
    }
    match (spec.selector.is_empty(), spec.nodes.is_empty()) {
        (true, true) => {
            return Err(RolloutError::Invalid(
                "selector: a rollout needs a selector (or nodes) naming its targets".into(),
            ));
        }
        (false, false) => {
            return Err(RolloutError::Invalid(
                "nodes: give either a selector or nodes, not both".into(),
            ));
        }
        _ => {}
    }
    if spec.nodes.len() > MAX_TARGETS {
        return Err(RolloutError::Invalid(format!(
            "nodes: at most {MAX_TARGETS} targets"
        )));
    }
    if spec.nodes.iter().any(|n| !valid_ident(n)) {
        return Err(RolloutError::Invalid(
            "nodes: a node id is 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'".into(),
        ));
    }
    let (conc, errors) = parse_limits(spec.max_concurrency.as_ref(), spec.max_errors.as_ref())
        .map_err(|(f, m)| RolloutError::Invalid(format!("{f}: {m}")))?;
    if let Some(w) = spec.batch_wait_secs
        && w > MAX_BATCH_WAIT_SECS
    {
        return Err(RolloutError::Invalid(format!(
            "batch_wait_secs: at most {MAX_BATCH_WAIT_SECS}"
        )));
    }
    if let Some(c) = spec.canary
        && c as usize > MAX_TARGETS
    {
        return Err(RolloutError::Invalid(format!(
            "canary: at most {MAX_TARGETS}"
        )));
    }
    Ok((conc, errors))
}

/// The targets of a spec among the tenant's `agents`, in the order they run: the named nodes
/// in their order, or the agents the selector matches (revoked ones excepted) by node id.
/// Pure.
pub fn resolve_targets(spec: &RolloutSpec, agents: &[Agent]) -> Result<Vec<String>> {
    let ids: Vec<String> = if !spec.nodes.is_empty() {
        let mut seen = BTreeSet::new();
        spec.nodes
            .iter()
            .filter(|n| seen.insert(n.as_str()))
            .cloned()
            .collect()
    } else {
        let mut v: Vec<String> = agents
            .iter()
            .filter(|a| a.revoked_at.is_none() && spec.selector.matches(*a))
            .map(|a| a.node_id.clone())
            .collect();
        v.sort();
        v
    };
    if ids.is_empty() {
        return Err(RolloutError::Invalid(
            "selector: no agent of this tenant matches it; a rollout needs at least one target"
                .into(),
        ));
    }
    if ids.len() > MAX_TARGETS {
        return Err(RolloutError::Invalid(format!(
            "selector: it matches {} agents; a rollout reaches at most {MAX_TARGETS}",
            ids.len()
        )));
    }
    Ok(ids)
}

/// A new rollout record from a spec over `agents`. Pure (but for the id).
pub fn build(
    tenant: &str,
    by: &str,
    spec: RolloutSpec,
    agents: &[Agent],
    now: Millis,
) -> Result<Rollout> {
    let (conc, errors) = validate_spec(&spec)?;
    let ids = resolve_targets(&spec, agents)?;
    let n = ids.len();
    let canary = (spec.canary.unwrap_or(0) as usize).min(n);
    let params = Params {
        max_concurrency: concurrency(conc, n),
        max_errors: errors.of(n),
        canary,
        batch_wait_ms: spec.batch_wait_secs.unwrap_or(0) * 1000,
        offline_is_error: spec.offline_is_error,
        on_halt: spec.on_halt,
        verify: spec.verify.is_some(),
    };
    Ok(Rollout {
        rollout_id: format!("r-{}", uuid::Uuid::now_v7().simple()),
        tenant: tenant.to_string(),
        status: RolloutStatus::Running,
        halt_reason: None,
        retry_of: None,
        retried_by: None,
        group: None,
        targets: ids
            .iter()
            .enumerate()
            .map(|(i, id)| Target::new(id, i < canary))
            .collect(),
        spec,
        params,
        created_by: by.to_string(),
        created_at: now,
        updated_at: now,
        finished_at: None,
    })
}

/// A user's request to change a rollout's course.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Pause,
    Resume,
    Cancel,
}

/// The status a control moves a rollout to: `Ok(None)` when it is there already. Pure.
pub fn control(status: RolloutStatus, c: Control) -> Result<Option<RolloutStatus>> {
    use RolloutStatus::*;
    let next = match (c, status) {
        (Control::Pause, Paused) | (Control::Resume, Running) => return Ok(None),
        (Control::Cancel, Cancelling | Cancelled) => return Ok(None),
        (Control::Pause, Running) => Paused,
        (Control::Resume, Paused) => Running,
        (Control::Cancel, Running | Paused | Halting) => Cancelling,
        (c, s) => {
            return Err(RolloutError::Conflict(format!(
                "the rollout is {}; it cannot be {}",
                s.as_str(),
                match c {
                    Control::Pause => "paused",
                    Control::Resume => "resumed",
                    Control::Cancel => "cancelled",
                }
            )));
        }
    };
    Ok(Some(next))
}

/// The rollout service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Rollouts {
    store: DynStore,
    jobs: Jobs,
    /// [`MAX_UNFINISHED`] unless set otherwise ([`Rollouts::with_max_unfinished`]).
    max_unfinished: usize,
    /// The submit-rate buckets of rollout jobs (the leader's own, per tenant).
    rates: std::sync::Arc<crate::quota::RateLimiter>,
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("rollout types always serialize")
}

fn dec(k: &Key, bytes: &[u8]) -> Result<Rollout> {
    crate::stored::decode(k, bytes, |key, reason| RolloutError::Corrupt {
        key,
        reason,
    })
}

/// `txn` with the writes that create rollout `r`.
fn creation(txn: Txn, tenant: &str, r: &Rollout) -> Result<Txn> {
    Ok(txn
        .put(
            Key::new(tenant, keys::rollout(&r.rollout_id))?,
            enc(r),
            Expect::Absent,
        )
        .put(
            Key::new(tenant, keys::rollout_active(&r.rollout_id))?,
            Vec::new(),
            Expect::Absent,
        ))
}

impl Rollouts {
    pub fn new(store: DynStore, jobs: Jobs) -> Rollouts {
        Rollouts {
            store,
            jobs,
            max_unfinished: MAX_UNFINISHED,
            rates: std::sync::Arc::default(),
        }
    }

    /// The same service with another cap on a tenant's unfinished rollouts (at least 1).
    pub fn with_max_unfinished(mut self, n: usize) -> Rollouts {
        self.max_unfinished = n.max(1);
        self
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    /// Creates a rollout of `spec` in `tenant`, its targets resolved now. With `fence`, the
    /// write is leader work (a schedule starting a rollout).
    pub async fn create(
        &self,
        tenant: &str,
        by: &str,
        spec: RolloutSpec,
        now: Millis,
        fence: Option<crate::store::Epoch>,
    ) -> Result<Rollout> {
        self.create_retry(tenant, by, spec, None, now, fence).await
    }

    /// Resolves a new rollout of `spec` (validated, its targets resolved now by the same code
    /// as [`Rollouts::create`]) and returns it with the writes that create it, committing
    /// nothing: a schedule's firing adds them to its own fenced transaction.
    /// `group` names the schedule run that starts it.
    pub async fn prepare_create(
        &self,
        tenant: &str,
        by: &str,
        spec: RolloutSpec,
        now: Millis,
        group: &str,
    ) -> Result<(Rollout, Txn)> {
        validate_spec(&spec)?;
        let agents = self.jobs.agents(tenant).await?;
        let mut r = build(tenant, by, spec, &agents, now)?;
        r.group = Some(group.to_string());
        let txn = creation(Txn::new(), tenant, &r)?;
        Ok((r, txn))
    }

    async fn create_retry(
        &self,
        tenant: &str,
        by: &str,
        spec: RolloutSpec,
        retry_of: Option<(Rollout, Version)>,
        now: Millis,
        fence: Option<crate::store::Epoch>,
    ) -> Result<Rollout> {
        validate_spec(&spec)?;
        let unfinished = self
            .store
            .list_range(
                tenant,
                &crate::store::Range::first(keys::ROLLOUTS_ACTIVE, self.max_unfinished),
            )
            .await?
            .len();
        if unfinished >= self.max_unfinished {
            return Err(RolloutError::Conflict(format!(
                "max_unfinished_rollouts: the tenant has {unfinished} unfinished rollouts, the most allowed; wait for some to finish, or cancel them"
            )));
        }
        let agents = self.jobs.agents(tenant).await?;
        let mut r = build(tenant, by, spec, &agents, now)?;
        let mut txn = Txn::new();
        if let Some((mut first, v)) = retry_of {
            // The first rollout names its retry in the same transaction, under CAS: of two
            // retries racing, one commits and the other meets a conflict.
            r.retry_of = Some(first.rollout_id.clone());
            first.retried_by = Some(r.rollout_id.clone());
            txn = txn.put(
                Key::new(tenant, keys::rollout(&first.rollout_id))?,
                enc(&first),
                Expect::Version(v),
            );
        }
        let mut txn = creation(txn, tenant, &r)?;
        txn.fence = fence;
        crate::events::record(
            &mut txn,
            tenant,
            &crate::events::kinds::rollout_created(&r, now),
        )?;
        match self.store.commit(txn).await {
            Ok(_) => Ok(r),
            Err(StoreError::Conflict { .. }) if r.retry_of.is_some() => Err(
                RolloutError::Conflict("the rollout changed or was retried meanwhile".into()),
            ),
            Err(e) => Err(e.into()),
        }
    }

    /// One rollout with its version.
    pub async fn load(&self, tenant: &str, id: &str) -> Result<(Rollout, Version)> {
        if !valid_ident(id) {
            return Err(RolloutError::NotFound(format!("rollout {id}")));
        }
        let k = Key::new(tenant, keys::rollout(id))?;
        match self.store.get(&k).await? {
            Some(v) => Ok((dec(&k, &v.value)?, v.version)),
            None => Err(RolloutError::NotFound(format!("rollout {id}"))),
        }
    }

    pub async fn get(&self, tenant: &str, id: &str) -> Result<Rollout> {
        Ok(self.load(tenant, id).await?.0)
    }

    /// One page of the tenant's rollouts, newest first, after `cursor` (a rollout id); and the
    /// cursor of the next page. Reads at most `limit + 1` records.
    pub async fn list(
        &self,
        tenant: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<(Vec<RolloutSummary>, Option<String>)> {
        let limit = limit.clamp(1, MAX_LIST);
        let mut range = Range::last(keys::ROLLOUTS, limit + 1);
        if let Some(c) = cursor {
            if !valid_ident(c) {
                return Err(RolloutError::Invalid("cursor: not a rollout id".into()));
            }
            range = range.after(keys::rollout(c));
        }
        let entries = self.store.list_range(tenant, &range).await?;
        let more = entries.len() > limit;
        let page: Vec<RolloutSummary> = entries
            .iter()
            .take(limit)
            .map(|e| dec(&e.key, &e.value).map(|r| r.summary()))
            .collect::<Result<_>>()?;
        let next = more
            .then(|| page.last().map(|r| r.rollout_id.clone()))
            .flatten();
        Ok((page, next))
    }

    /// Pauses, resumes or cancels a rollout (a CAS on its record; the leader acts on the new
    /// status at its next pass).
    pub async fn control(
        &self,
        tenant: &str,
        id: &str,
        c: Control,
        now: Millis,
    ) -> Result<Rollout> {
        for _ in 0..CAS_RETRIES {
            let (mut r, v) = self.load(tenant, id).await?;
            let Some(next) = control(r.status, c)? else {
                return Ok(r);
            };
            r.status = next;
            r.updated_at = now;
            let mut txn = Txn::new().put(
                Key::new(tenant, keys::rollout(id))?,
                enc(&r),
                Expect::Version(v),
            );
            if let Some(e) = crate::events::kinds::rollout_control(&r, c, next, now) {
                crate::events::record(&mut txn, tenant, &e)?;
            }
            if crate::store::landed(self.store.commit(txn).await)? {
                return Ok(r);
            }
        }
        Err(RolloutError::Conflict(format!(
            "rollout {id} is changing too fast; retry"
        )))
    }

    /// A new rollout of the finished rollout `id`'s failed, skipped, cancelled and not started
    /// targets, with the same spec, referencing it.
    pub async fn retry(&self, tenant: &str, id: &str, by: &str, now: Millis) -> Result<Rollout> {
        let (r, version) = self.load(tenant, id).await?;
        if let Some(next) = &r.retried_by {
            return Err(RolloutError::Conflict(format!(
                "the rollout was already retried as {next}"
            )));
        }
        if !r.status.is_finished() {
            return Err(RolloutError::Conflict(format!(
                "the rollout is {}; only a finished rollout is retried",
                r.status.as_str()
            )));
        }
        let nodes: Vec<String> = r
            .targets
            .iter()
            .filter(|t| t.state != TargetState::Succeeded)
            .map(|t| t.node_id.clone())
            .collect();
        if nodes.is_empty() {
            return Err(RolloutError::Conflict(
                "every target of the rollout succeeded; nothing to retry".into(),
            ));
        }
        let spec = RolloutSpec {
            selector: Selector::default(),
            nodes,
            ..r.spec.clone()
        };
        self.create_retry(tenant, by, spec, Some((r, version)), now, None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, role: &str) -> Agent {
        serde_json::from_value(serde_json::json!({
            "node_id": id, "tenant": "t", "labels": {"role": role}, "slots": 4,
            "state": "online", "registered_at": 0, "last_seen": 0
        }))
        .unwrap()
    }

    fn spec(v: serde_json::Value) -> Result<RolloutSpec, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn specs_are_checked_field_by_field() {
        let agents = [agent("a", "web"), agent("b", "web"), agent("c", "db")];
        let ok = spec(serde_json::json!({
            "command": "true", "selector": "role=web", "max_concurrency": "50%",
            "max_errors": 1, "canary": 1
        }))
        .unwrap();
        let r = build("t", "u", ok, &agents, 5).unwrap();
        assert_eq!(r.targets.len(), 2);
        assert_eq!(r.params.max_concurrency, 1);
        assert_eq!(r.params.max_errors, 1);
        assert!(r.targets[0].canary && !r.targets[1].canary);
        for (body, field) in [
            (
                serde_json::json!({"command": "true", "selector": "role=web", "max_concurrency": "150%"}),
                "max_concurrency",
            ),
            (
                serde_json::json!({"command": "true", "selector": "role=web", "max_concurrency": "0%"}),
                "max_concurrency",
            ),
            (
                serde_json::json!({"command": "true", "selector": "role=web", "max_concurrency": 0}),
                "max_concurrency",
            ),
            (
                serde_json::json!({"command": "true", "selector": "role=web", "max_errors": "101%"}),
                "max_errors",
            ),
            (
                serde_json::json!({"command": "true", "selector": "role=nope"}),
                "selector",
            ),
            (serde_json::json!({"command": "true"}), "selector"),
            (serde_json::json!({"selector": "role=web"}), "command"),
        ] {
            let e = build("t", "u", spec(body.clone()).unwrap(), &agents, 0).unwrap_err();
            assert!(e.to_string().contains(field), "{body}: {e}");
        }
        let e = spec(
            serde_json::json!({"command": "true", "selector": "role=web", "max_concurency": 1}),
        )
        .unwrap_err();
        assert!(e.contains("max_concurency"), "{e}");
    }

    #[test]
    fn controls_move_only_unfinished_rollouts() {
        use RolloutStatus::*;
        assert_eq!(control(Running, Control::Pause).unwrap(), Some(Paused));
        assert_eq!(control(Paused, Control::Pause).unwrap(), None);
        assert_eq!(control(Paused, Control::Resume).unwrap(), Some(Running));
        assert_eq!(control(Halting, Control::Cancel).unwrap(), Some(Cancelling));
        assert!(control(Halting, Control::Resume).is_err());
        assert!(control(Succeeded, Control::Pause).is_err());
        assert!(control(Halted, Control::Cancel).is_err());
        assert_eq!(control(Cancelled, Control::Cancel).unwrap(), None);
    }
}
