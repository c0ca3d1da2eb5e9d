//! The schedules of an apply (`POST /v1/states`, `fluxctl apply` and `diff`): the `[[schedule]]`
//! tables of a state file (or `schedules` given as JSON) are planned by
//! [`super::plan::plan_schedules`] beside the file's states, and written in the same one
//! transaction as the states.
//!
//! Guarantees:
//! - an apply changes all of its states and schedules or none: every table is checked (a bad
//!   cron field, zone, interval or job names its table and field) before anything is written,
//!   and the writes are one transaction;
//! - an update is a CAS on the version planned against, so a schedule edited (or created)
//!   concurrently makes the apply a conflict that changes nothing;
//! - a schedule the file does not declare is deleted only with `prune` (with its status
//!   record; its jobs stay, as any job does); a JSON apply without `schedules` leaves
//!   schedules alone;
//! - no apply takes a tenant past [`MAX_SCHEDULES`] schedules.

use std::collections::BTreeMap;

use super::file::parse_schedule_tables;
use super::plan::plan_schedules;
use super::service::enc;
use super::{MAX_SCHEDULES, ScheduleError, ScheduleSpec, Schedules};
use crate::keys;
use crate::model::{Millis, valid_ident};
use crate::state::{ApplyRequest, Plan, PlanAction, StateError, States};
use crate::store::{Expect, Key, Version};

fn state_error(e: ScheduleError) -> StateError {
    match e {
        ScheduleError::NotFound(m) => StateError::NotFound(m),
        ScheduleError::Invalid(m) => StateError::Invalid(m),
        ScheduleError::Conflict(m) => StateError::Conflict(m),
        ScheduleError::PreconditionFailed(m) => StateError::PreconditionFailed(m),
        ScheduleError::Corrupt { key, reason } => StateError::Corrupt { key, reason },
        ScheduleError::Store(s) => StateError::Store(s),
        ScheduleError::Jobs(j) => StateError::Jobs(j),
        ScheduleError::Quota(r) => StateError::Quota(r),
    }
}

/// The schedules an apply declares: a file's `[[schedule]]` tables, or the JSON `schedules`
/// (`None`: the apply leaves schedules alone).
fn declared(
    req: &ApplyRequest,
    schedules: &Schedules,
) -> Result<Option<Vec<ScheduleSpec>>, StateError> {
    match (&req.toml, &req.schedules) {
        (Some(text), None) => {
            let file = req.file.as_deref().unwrap_or("state.toml");
            parse_schedule_tables(file, text, schedules.min_interval_ms())
                .map(Some)
                .map_err(|e| StateError::Invalid(e.to_string()))
        }
        (None, Some(list)) => {
            if list.len() > MAX_SCHEDULES {
                return Err(StateError::Invalid(format!(
                    "schedules: at most {MAX_SCHEDULES} in one apply"
                )));
            }
            let mut names = std::collections::BTreeSet::new();
            for s in list {
                schedules.validate(s).map_err(state_error)?;
                if !names.insert(&s.name) {
                    return Err(StateError::Invalid(format!(
                        "schedules: schedule {:?} is declared twice",
                        s.name
                    )));
                }
            }
            Ok(Some(list.clone()))
        }
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(StateError::Invalid(
            "schedules: a toml declares its schedules in [[schedule]] tables; give one or the other"
                .into(),
        )),
    }
}

fn check_expect(expect: Option<&BTreeMap<String, Version>>) -> Result<(), StateError> {
    let Some(e) = expect else { return Ok(()) };
    if e.len() > MAX_SCHEDULES {
        return Err(StateError::Invalid(format!(
            "expect_schedules: at most {MAX_SCHEDULES} schedules"
        )));
    }
    if e.keys().any(|k| !valid_ident(k)) {
        return Err(StateError::Invalid(
            "expect_schedules: schedule names must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-'"
                .into(),
        ));
    }
    Ok(())
}

/// Plans (and unless `dry_run`, carries out) an apply of states and schedules in one
/// transaction. `compare_secrets`: whether the caller may write schedules, and so may learn
/// whether a secret value given in clear equals the stored one (see `secrets::seal`); false
/// for a viewer's dry run.
pub async fn apply(
    states: &States,
    schedules: &Schedules,
    tenant: &str,
    by: &str,
    req: ApplyRequest,
    now: Millis,
    compare_secrets: bool,
) -> Result<Plan, StateError> {
    check_expect(req.expect_schedules.as_ref())?;
    let prune = req.prune;
    let expect = req.expect_schedules.clone();
    // States first: their checks include the bounds of the request (the size of the text).
    // Nothing is written before the commit at the end.
    let mut req_states = req.clone();
    req_states.schedules = None;
    req_states.expect_schedules = None;
    let mut prepared = states.prepare_apply(tenant, by, req_states, now).await?;
    let Some(specs) = declared(&req, schedules)? else {
        return states.commit_apply(prepared).await;
    };
    let current = schedules.stored(tenant).await.map_err(state_error)?;
    // Secret values are planned by their digests, and stored apart.
    let mut specs = specs;
    let mut secret_values: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for spec in &mut specs {
        let stored = match current.get(&spec.name) {
            Some(_) => super::secrets::load(&schedules.store, tenant, &spec.name)
                .await
                .map_err(state_error)?,
            None => BTreeMap::new(),
        };
        let values = super::secrets::seal(spec, &stored, compare_secrets).map_err(|m| {
            StateError::Invalid(format!("schedule {}: {m}", crate::state::shown(&spec.name)))
        })?;
        secret_values.insert(spec.name.clone(), values);
    }
    let items = plan_schedules(&current, &specs, prune, expect.as_ref())
        .map_err(|e| StateError::Conflict(e.0))?;
    let count = |a: PlanAction| items.iter().filter(|i| i.action == a).count();
    let after = current.len() + count(PlanAction::Create) - count(PlanAction::Delete);
    if after > MAX_SCHEDULES && after > current.len() {
        return Err(StateError::Invalid(format!(
            "schedules: a tenant has at most {MAX_SCHEDULES} schedules; this apply would leave {after}"
        )));
    }
    let by_name: BTreeMap<&str, &ScheduleSpec> =
        specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut txn = prepared.txn;
    for item in &items {
        let k = Key::new(tenant, keys::schedule(&item.name))?;
        let v = item.from_version;
        let record = |current| {
            enc(&Schedules::record(
                by,
                by_name[item.name.as_str()].clone(),
                current,
                now,
            ))
        };
        let secrets = |txn| {
            super::secrets::write(txn, tenant, &item.name, &secret_values[&item.name])
                .map_err(state_error)
        };
        txn = match item.action {
            PlanAction::Create => secrets(txn.put(k, record(None), Expect::Absent))?,
            PlanAction::Unchanged => txn.check(k, Expect::Version(v)),
            PlanAction::Update => {
                let cur = &current[&item.name].0;
                secrets(txn.put(k, record(Some(cur)), Expect::Version(v)))?
            }
            PlanAction::Delete => txn
                .delete(k, Expect::Version(v))
                .delete(
                    Key::new(tenant, keys::schedule_status(&item.name))?,
                    Expect::Any,
                )
                .delete(
                    Key::new(tenant, keys::schedule_secrets(&item.name))?,
                    Expect::Any,
                ),
        };
    }
    prepared.txn = txn;
    prepared.plan.schedules = items;
    states.commit_apply(prepared).await
}
