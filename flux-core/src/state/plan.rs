//! Planning an apply, pure: given the states stored now and the set a file (or request)
//! declares, [`plan()`] says what applying would do to each state (create, update, leave
//! unchanged, delete when pruning), with the fields that change. No I/O: the state service
//! turns a plan into one transaction; `fluxctl diff` shows the same plan from a dry run.
//!
//! A plan made against versions the caller names (`expect`, from an earlier dry run) fails with
//! [`PlanConflict`] when a state moved since, or when pruning would delete a state the earlier
//! plan did not show.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{FieldChange, StateSpec, StoredState, diff_specs};
use crate::store::Version;

/// What an apply does to one state. (Called `reconcile::Action` before; renamed because the
/// reconciler's steps are actions too.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanAction {
    Create,
    Update,
    Unchanged,
    Delete,
}

/// One line of a plan.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanItem {
    pub name: String,
    pub action: PlanAction,
    /// Version before (0 = absent).
    pub from_version: Version,
    /// Version after applying (0 = deleted; unknown in a dry run of a change).
    pub to_version: Option<Version>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<FieldChange>,
}

/// What an apply did, or would do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub dry_run: bool,
    pub items: Vec<PlanItem>,
    /// The schedules the file's `[[schedule]]` tables declare (`crate::schedule::apply`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<PlanItem>,
}

impl Plan {
    /// Whether applying would change anything.
    pub fn has_changes(&self) -> bool {
        self.items
            .iter()
            .chain(&self.schedules)
            .any(|i| i.action != PlanAction::Unchanged)
    }
}

/// The plan was made against states that have moved since; the message says which.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanConflict(pub String);

/// Plans applying `specs` over `current` (every stored state of the tenant, by name, with its
/// version). Items come in the order of `specs`, then the pruned states in name order.
/// `expect` holds the versions the caller planned against (0 = absent); when it is given,
/// pruning may only delete states it names.
pub fn plan(
    current: &BTreeMap<String, (StoredState, Version)>,
    specs: &[StateSpec],
    prune: bool,
    expect: &BTreeMap<String, Version>,
) -> Result<Vec<PlanItem>, PlanConflict> {
    let declared = specs.iter().map(|s| (s.name.as_str(), s));
    let expect = (!expect.is_empty()).then_some(expect);
    plan_named("state", current, declared, prune, expect, |old, new| {
        diff_specs(&old.spec, new)
    })
}

/// The plan of an apply of named objects of one kind (`kind` names them in conflicts: `state`,
/// `schedule`), for [`plan()`] and `crate::schedule::plan_schedules`: `declared` holds each
/// declared spec by name, `diff` the fields that change from a stored object to its spec.
/// `expect`, when given (even empty), holds the versions the caller planned against (0 =
/// absent), and pruning may only delete the objects it names.
pub(crate) fn plan_named<'a, T, S: 'a>(
    kind: &str,
    current: &BTreeMap<String, (T, Version)>,
    declared: impl IntoIterator<Item = (&'a str, &'a S)>,
    prune: bool,
    expect: Option<&BTreeMap<String, Version>>,
    diff: impl Fn(&T, &S) -> Vec<FieldChange>,
) -> Result<Vec<PlanItem>, PlanConflict> {
    for (name, want) in expect.into_iter().flatten() {
        let have = current.get(name).map_or(0, |(_, v)| *v);
        if have != *want {
            return Err(PlanConflict(format!(
                "{kind} {name} is at version {have}, not {want} as planned; run diff again"
            )));
        }
    }
    let mut items = Vec::new();
    let mut names = BTreeSet::new();
    for (name, spec) in declared {
        names.insert(name);
        let item = |action, from_version, to_version, changes| PlanItem {
            name: name.to_string(),
            action,
            from_version,
            to_version,
            changes,
        };
        items.push(match current.get(name) {
            None => item(PlanAction::Create, 0, None, Vec::new()),
            Some((old, v)) => {
                let changes = diff(old, spec);
                if changes.is_empty() {
                    item(PlanAction::Unchanged, *v, Some(*v), changes)
                } else {
                    item(PlanAction::Update, *v, None, changes)
                }
            }
        });
    }
    if prune {
        for (name, (_, v)) in current {
            if names.contains(name.as_str()) {
                continue;
            }
            if expect.is_some_and(|e| !e.contains_key(name)) {
                return Err(PlanConflict(format!(
                    "{kind} {name} appeared after the plan was made and would be pruned unseen; run diff again"
                )));
            }
            items.push(PlanItem {
                name: name.clone(),
                action: PlanAction::Delete,
                from_version: *v,
                to_version: Some(0),
                changes: Vec::new(),
            });
        }
    }
    Ok(items)
}

/// Each item's name, action and versions: what the plan tests compare.
#[cfg(test)]
pub(crate) fn actions(items: &[PlanItem]) -> Vec<(&str, PlanAction, Version, Option<Version>)> {
    items
        .iter()
        .map(|i| (i.name.as_str(), i.action, i.from_version, i.to_version))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Targets;

    fn spec(name: &str, check: &str) -> StateSpec {
        StateSpec {
            name: name.into(),
            targets: Targets {
                agents: vec!["a1".into()],
                labels: Default::default(),
            },
            check: check.into(),
            apply: "apply".into(),
            interval_secs: 30,
            timeout_secs: 60,
            env: BTreeMap::new(),
            desired_exit_code: 0,
            rollout: None,
        }
    }

    fn stored(specs: &[(StateSpec, Version)]) -> BTreeMap<String, (StoredState, Version)> {
        specs
            .iter()
            .map(|(s, v)| {
                let st = StoredState {
                    spec: s.clone(),
                    created_at: 1,
                    updated_at: 1,
                    updated_by: "me".into(),
                };
                (s.name.clone(), (st, *v))
            })
            .collect()
    }

    #[test]
    fn each_declared_state_is_created_updated_or_unchanged() {
        let current = stored(&[(spec("a", "true"), 3), (spec("b", "true"), 4)]);
        let want = [spec("c", "true"), spec("b", "false"), spec("a", "true")];
        let items = plan(&current, &want, false, &BTreeMap::new()).unwrap();
        assert_eq!(
            actions(&items),
            [
                ("c", PlanAction::Create, 0, None),
                ("b", PlanAction::Update, 4, None),
                ("a", PlanAction::Unchanged, 3, Some(3)),
            ]
        );
        assert_eq!(items[1].changes.len(), 1);
        assert_eq!(items[1].changes[0].field, "check");
        assert!(items[0].changes.is_empty() && items[2].changes.is_empty());
    }

    #[test]
    fn pruning_deletes_what_the_set_does_not_declare() {
        let current = stored(&[(spec("a", "true"), 3), (spec("z", "true"), 9)]);
        let want = [spec("a", "true")];
        let kept = plan(&current, &want, false, &BTreeMap::new()).unwrap();
        assert_eq!(actions(&kept), [("a", PlanAction::Unchanged, 3, Some(3))]);
        let pruned = plan(&current, &want, true, &BTreeMap::new()).unwrap();
        assert_eq!(
            actions(&pruned),
            [
                ("a", PlanAction::Unchanged, 3, Some(3)),
                ("z", PlanAction::Delete, 9, Some(0)),
            ]
        );
    }

    #[test]
    fn a_plan_against_moved_versions_is_a_conflict() {
        let current = stored(&[(spec("a", "true"), 3)]);
        let want = [spec("a", "false")];
        let ok: BTreeMap<String, Version> = [("a".into(), 3)].into();
        assert!(plan(&current, &want, false, &ok).is_ok());
        let moved: BTreeMap<String, Version> = [("a".into(), 2)].into();
        assert_eq!(
            plan(&current, &want, false, &moved).unwrap_err().0,
            "state a is at version 3, not 2 as planned; run diff again"
        );
        let created_since: BTreeMap<String, Version> = [("a".into(), 0)].into();
        assert!(plan(&current, &want, false, &created_since).is_err());
    }

    #[test]
    fn pruning_a_state_the_plan_did_not_see_is_a_conflict() {
        let current = stored(&[(spec("a", "true"), 3), (spec("new", "true"), 7)]);
        let want = [spec("a", "true")];
        let seen: BTreeMap<String, Version> = [("a".into(), 3)].into();
        assert_eq!(
            plan(&current, &want, true, &seen).unwrap_err().0,
            "state new appeared after the plan was made and would be pruned unseen; run diff again"
        );
        // Without expected versions there is no earlier plan to compare with.
        assert!(plan(&current, &want, true, &BTreeMap::new()).is_ok());
    }
}
