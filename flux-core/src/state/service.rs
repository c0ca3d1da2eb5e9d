//! The state service: desired states stored with CAS (list, get, put, delete) and the apply of
//! a whole set of states, planned by [`super::plan()`] and written in one transaction.
//!
//! Guarantees:
//! - every write of a state is a CAS on its version; `put` and `delete` answer
//!   PreconditionFailed when the caller's expected version is not the stored one;
//! - an apply changes all of its states or none, and fails with a conflict (changing nothing)
//!   when a state it planned against moved, or would prune a state the plan did not see.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{
    MAX_STATES, Plan, PlanAction, PlanItem, StateSpec, StoredState, parse_state_file, plan, shown,
    target_ids, validate_set, validate_spec,
};
use crate::error::{delete_refused, expect_for_delete, write_refused};
use crate::jobs::Jobs;
use crate::keys;
use crate::model::{Agent, Millis};
use crate::reconcile::{StateRolloutStatus, StateRolloutView, TargetStatus};
use crate::store::{DynStore, Expect, Key, StoreError, Txn, Version};

crate::error::spec_service_error! {
    /// Errors of the state service.
    StateError,
    quota:
    /// The change would take the tenant past its `max_states` quota; nothing was written.
}

pub type Result<T, E = StateError> = std::result::Result<T, E>;

/// A state with its version and the status of every target.
#[serde_with::skip_serializing_none]
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
    /// With a `rollout` table: its limits over the current targets, repairs running, failed
    /// repairs that count, and whether remediation is halted.
    pub rollout: Option<StateRolloutView>,
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
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    /// The text of a `state.toml` (errors then name `file`, line and field).
    pub toml: Option<String>,
    pub file: Option<String>,
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
    /// Schedules declared as JSON beside `states` (a `toml` declares them in its
    /// `[[schedule]]` tables); absent, a JSON apply leaves schedules alone.
    pub schedules: Option<Vec<crate::schedule::ScheduleSpec>>,
    /// The schedule versions the caller planned against (0 = absent), as `expect`; given
    /// (even empty), pruning deletes only the schedules it names.
    pub expect_schedules: Option<BTreeMap<String, Version>>,
}

/// An apply planned and checked, not yet committed: its plan and the one transaction that
/// carries it out (to which `crate::schedule::apply` adds its schedules' writes).
#[derive(Debug)]
pub struct PreparedApply {
    pub plan: Plan,
    pub txn: Txn,
}

/// The state service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct States {
    store: DynStore,
    jobs: Jobs,
}

/// A stored object of desired state (a state, a target's status, a halt record) decoded; one
/// that does not decode is `Corrupt`, naming its key.
pub(crate) fn dec<T: serde::de::DeserializeOwned>(k: &Key, bytes: &[u8]) -> Result<T> {
    crate::stored::decode(k, bytes, |key, reason| StateError::Corrupt { key, reason })
}

/// A stored object of desired state, encoded.
pub(crate) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("state types always serialize")
}

fn invalid_spec(s: &StateSpec) -> Result<()> {
    validate_spec(s).map_err(|e| {
        StateError::Invalid(format!(
            "state {}: {}: {}",
            shown(&s.name),
            e.field,
            e.message
        ))
    })
}

impl States {
    pub fn new(store: DynStore, jobs: Jobs) -> States {
        States { store, jobs }
    }

    /// Admission of a change taking the tenant from `before` to `after` states
    /// ([`crate::quota::admit_states`]). The count is read before the write, so concurrent
    /// creations can overshoot the quota by a few, as with `max_queued`.
    async fn admit_count(&self, tenant: &str, before: usize, after: usize) -> Result<()> {
        if after <= before {
            return Ok(());
        }
        let q = crate::quota::read(self.store.as_ref(), tenant, |key, reason| {
            StateError::Corrupt { key, reason }
        })
        .await?;
        crate::quota::admit_states(tenant, &q, before as u64, after as u64)
            .map_err(StateError::Quota)
    }

    /// Every state of a tenant, by name, with its version.
    pub(crate) async fn stored_states(
        &self,
        tenant: &str,
    ) -> Result<BTreeMap<String, (StoredState, Version)>> {
        let states = crate::stored::list(self.store.as_ref(), tenant, keys::STATES, dec).await?;
        Ok(crate::stored::by_name(states, |s: &StoredState| {
            &s.spec.name
        }))
    }

    /// The target records under `prefix` (all of a tenant's, or one state's).
    pub(crate) async fn statuses(
        &self,
        tenant: &str,
        prefix: &str,
    ) -> Result<Vec<(TargetStatus, Version)>> {
        crate::stored::list(self.store.as_ref(), tenant, prefix, dec).await
    }

    fn view(
        name: &str,
        s: &StoredState,
        version: Version,
        agents: &[Agent],
        statuses: &BTreeMap<(String, String), TargetStatus>,
        halts: &BTreeMap<String, StateRolloutStatus>,
    ) -> StateView {
        let targets: Vec<TargetStatus> = target_ids(&s.spec, agents)
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
        let rollout = s
            .spec
            .rollout
            .as_ref()
            .map(|r| crate::reconcile::rollout_view(r, version, &targets, halts.get(name)));
        StateView {
            name: name.to_string(),
            version,
            created_at: s.created_at,
            updated_at: s.updated_at,
            updated_by: s.updated_by.clone(),
            spec: s.spec.clone(),
            status: targets,
            rollout,
        }
    }

    /// The rollout records of a tenant's states (all, or the one named), by state name.
    async fn halts(
        &self,
        tenant: &str,
        name: Option<&str>,
    ) -> Result<BTreeMap<String, StateRolloutStatus>> {
        let prefix = name.map_or(keys::STATE_ROLLOUTS.to_string(), keys::state_rollout);
        let mut m = BTreeMap::new();
        for e in self.store.list(tenant, &prefix).await? {
            if let Some(n) = e.key.path().strip_prefix(keys::STATE_ROLLOUTS)
                && name.is_none_or(|want| want == n)
            {
                m.insert(n.to_string(), dec(&e.key, &e.value)?);
            }
        }
        Ok(m)
    }

    /// Resumes a state's remediation halted by its rollout: the failed repairs counted so far
    /// at its current version are forgiven, and the reconciler starts applies again (within
    /// `max_concurrency`). Returns the state, and whether anything changed (a state that is not
    /// halted is left as it is). A state without a rollout is a conflict.
    pub async fn resume(
        &self,
        tenant: &str,
        name: &str,
        by: &str,
        now: Millis,
    ) -> Result<(StateView, bool)> {
        let view = self.get(tenant, name).await?;
        let Some(r) = &view.rollout else {
            return Err(StateError::Conflict(format!(
                "state {name} has no rollout table: there is no halt to resume"
            )));
        };
        if !r.halted {
            return Ok((view, false));
        }
        let k = Key::new(tenant, keys::state_rollout(name))?;
        let expect = match self.store.get(&k).await? {
            Some(v) => Expect::Version(v.version),
            None => Expect::Absent,
        };
        let rec = crate::reconcile::resumed(view.version, &view.status, by, now);
        let txn = Txn::new()
            .check(
                Key::new(tenant, keys::state(name))?,
                Expect::Version(view.version),
            )
            .put(k, enc(&rec), expect);
        match self.store.commit(txn).await {
            Ok(_) => Ok((self.get(tenant, name).await?, true)),
            Err(StoreError::Conflict { .. }) => Err(StateError::Conflict(format!(
                "state {name} changed while being resumed; retry"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Every state of a tenant with its targets' status.
    pub async fn list(&self, tenant: &str) -> Result<Vec<StateView>> {
        let states = self.stored_states(tenant).await?;
        if states.is_empty() {
            // Nothing to show the fleet against: the agents are not read.
            return Ok(Vec::new());
        }
        let agents = self.jobs.agents(tenant).await?;
        let statuses: BTreeMap<(String, String), TargetStatus> = self
            .statuses(tenant, keys::STATUSES)
            .await?
            .into_iter()
            .map(|(t, _)| ((t.state.clone(), t.agent.clone()), t))
            .collect();
        let halts = self.halts(tenant, None).await?;
        Ok(states
            .iter()
            .map(|(n, (s, v))| Self::view(n, s, *v, &agents, &statuses, &halts))
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
        let halts = match s.spec.rollout {
            Some(_) => self.halts(tenant, Some(name)).await?,
            None => BTreeMap::new(),
        };
        Ok(Self::view(name, &s, v, &agents, &statuses, &halts))
    }

    async fn load(&self, tenant: &str, name: &str) -> Result<(StoredState, Version)> {
        if !crate::model::valid_ident(name) {
            return Err(StateError::NotFound(format!("state {}", shown(name))));
        }
        let k = Key::new(tenant, keys::state(name))?;
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
        let k = Key::new(tenant, keys::state(&spec.name))?;
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
        if current.is_none() {
            let n = self.store.list(tenant, keys::STATES).await?.len();
            self.admit_count(tenant, n, n + 1).await?;
        }
        self.store
            .put(k, enc(&stored), cas)
            .await
            .map(|v| (v, current.is_none()))
            .map_err(|e| write_refused("state", &name, expect, e))
    }

    /// Deletes a state and its targets' records.
    pub async fn delete(&self, tenant: &str, name: &str, expect: Expect) -> Result<Version> {
        let (_, v) = self.load(tenant, name).await?;
        expect_for_delete::<StateError>("state", name, expect, v)?;
        let mut txn = Txn::new().delete(Key::new(tenant, keys::state(name))?, Expect::Version(v));
        for e in self.store.list(tenant, &keys::statuses(name)).await? {
            txn = txn.delete(e.key, Expect::Any);
        }
        txn = self.delete_halt(txn, tenant, name).await?;
        self.store
            .commit(txn)
            .await
            .map(|_| v)
            .map_err(|e| delete_refused("state", name, e))
    }

    /// `txn` that also deletes the state's rollout record, if it has one.
    async fn delete_halt(&self, txn: Txn, tenant: &str, name: &str) -> Result<Txn> {
        let k = Key::new(tenant, keys::state_rollout(name))?;
        Ok(match self.store.get(&k).await? {
            Some(v) => txn.delete(k, Expect::Version(v.version)),
            None => txn,
        })
    }

    /// Plans and (unless a dry run) applies a whole set of states in one transaction.
    pub async fn apply(
        &self,
        tenant: &str,
        by: &str,
        req: ApplyRequest,
        now: Millis,
    ) -> Result<Plan> {
        let prepared = self.prepare_apply(tenant, by, req, now).await?;
        self.commit_apply(prepared).await
    }

    /// Plans an apply's states and builds its transaction, writing nothing.
    pub async fn prepare_apply(
        &self,
        tenant: &str,
        by: &str,
        req: ApplyRequest,
        now: Millis,
    ) -> Result<PreparedApply> {
        let ApplyRequest {
            toml,
            file,
            states,
            prune,
            dry_run,
            expect,
            ..
        } = req;
        check_apply_fields(toml.as_deref(), file.as_deref(), &expect)?;
        let specs = declared_specs(toml.as_deref(), file.as_deref(), states)?;
        let current = self.stored_states(tenant).await?;
        let items =
            plan(&current, &specs, prune, &expect).map_err(|e| StateError::Conflict(e.0))?;
        let txn = self
            .apply_txn(tenant, by, now, &current, &specs, &items)
            .await?;
        let count = |a: PlanAction| items.iter().filter(|i| i.action == a).count();
        let after = current.len() + count(PlanAction::Create) - count(PlanAction::Delete);
        // A dry run says so too: the apply it previews would be refused.
        self.admit_count(tenant, current.len(), after).await?;
        Ok(PreparedApply {
            plan: Plan {
                dry_run,
                items,
                schedules: Vec::new(),
            },
            txn,
        })
    }

    /// Commits a prepared apply (nothing for a dry run or a plan without changes); the
    /// versions written are set in the plan returned.
    pub async fn commit_apply(&self, prepared: PreparedApply) -> Result<Plan> {
        let PreparedApply { mut plan, txn } = prepared;
        if plan.dry_run || !plan.has_changes() {
            return Ok(plan);
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
        for i in plan.items.iter_mut().chain(&mut plan.schedules) {
            if matches!(i.action, PlanAction::Create | PlanAction::Update) {
                i.to_version = Some(rev);
            }
        }
        Ok(plan)
    }

    /// The one transaction that carries out a plan's items, in their order: states created
    /// (absent before), updated (CAS on the version planned against, keeping `created_at`),
    /// checked unchanged, or deleted with their targets' records.
    async fn apply_txn(
        &self,
        tenant: &str,
        by: &str,
        now: Millis,
        current: &BTreeMap<String, (StoredState, Version)>,
        specs: &[StateSpec],
        items: &[PlanItem],
    ) -> Result<Txn> {
        let by_name: BTreeMap<&str, &StateSpec> =
            specs.iter().map(|s| (s.name.as_str(), s)).collect();
        let stored = |name: &str, created_at: Millis| StoredState {
            spec: by_name[name].clone(),
            created_at,
            updated_at: now,
            updated_by: by.to_string(),
        };
        let mut txn = Txn::new();
        for item in items {
            let k = Key::new(tenant, keys::state(&item.name))?;
            let v = item.from_version;
            txn = match item.action {
                PlanAction::Create => txn.put(k, enc(&stored(&item.name, now)), Expect::Absent),
                // Still part of the snapshot the apply is based on.
                PlanAction::Unchanged => txn.check(k, Expect::Version(v)),
                PlanAction::Update => {
                    let created_at = current[&item.name].0.created_at;
                    txn.put(k, enc(&stored(&item.name, created_at)), Expect::Version(v))
                }
                PlanAction::Delete => {
                    let mut txn = txn.delete(k, Expect::Version(v));
                    for e in self.store.list(tenant, &keys::statuses(&item.name)).await? {
                        txn = txn.delete(e.key, Expect::Any);
                    }
                    self.delete_halt(txn, tenant, &item.name).await?
                }
            };
        }
        Ok(txn)
    }
}

/// Longest state file text an apply takes.
pub const MAX_TOML_BYTES: usize = 4 * 1024 * 1024;
/// Longest file name an apply may give for its errors.
pub const MAX_FILE_NAME_BYTES: usize = 256;

/// The bounds of an apply's own fields (its states are checked by [`validate_set`]).
fn check_apply_fields(
    toml: Option<&str>,
    file: Option<&str>,
    expect: &BTreeMap<String, Version>,
) -> Result<()> {
    let bad = |m: String| Err(StateError::Invalid(m));
    if toml.is_some_and(|t| t.len() > MAX_TOML_BYTES) {
        return bad(format!("toml: at most {MAX_TOML_BYTES} bytes"));
    }
    if file.is_some_and(|f| {
        f.is_empty() || f.len() > MAX_FILE_NAME_BYTES || f.contains(char::is_control)
    }) {
        return bad(format!(
            "file: must be 1 to {MAX_FILE_NAME_BYTES} bytes without control characters"
        ));
    }
    if expect.len() > MAX_STATES {
        return bad(format!("expect: at most {MAX_STATES} states"));
    }
    if expect.keys().any(|k| !crate::model::valid_ident(k)) {
        return bad(
            "expect: state names must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
                .into(),
        );
    }
    Ok(())
}

/// The states an apply declares: parsed from the text of a state file (errors name `file`,
/// line and field) or given as JSON, each checked, names unique.
fn declared_specs(
    toml: Option<&str>,
    file: Option<&str>,
    states: Option<Vec<StateSpec>>,
) -> Result<Vec<StateSpec>> {
    match (toml, states) {
        (Some(text), None) => {
            let file = file.unwrap_or("state.toml");
            parse_state_file(file, text).map_err(|e| StateError::Invalid(e.to_string()))
        }
        (None, Some(s)) => {
            validate_set(&s).map_err(StateError::Invalid)?;
            Ok(s)
        }
        _ => Err(StateError::Invalid(
            "give either toml (the text of a state file) or states".into(),
        )),
    }
}
