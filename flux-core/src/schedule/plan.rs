//! Planning the schedules of an apply, pure: given the schedules stored now and the ones a
//! state file declares, [`plan_schedules`] says what applying would do to each (create,
//! update, leave unchanged, delete when pruning), with the fields that change, in the same
//! [`PlanItem`]s as states. No I/O: [`super::apply`] turns the plan into writes of the apply's
//! one transaction.
//!
//! Guarantees:
//! - a plan made against versions the caller names (`expect`, from an earlier dry run) fails
//!   with [`PlanConflict`] when a schedule moved since, or when pruning would delete a
//!   schedule the earlier plan did not show;
//! - without `prune` no stored schedule is deleted, whatever the file declares.

use std::collections::BTreeMap;

use super::{ScheduleSpec, StoredSchedule};
use crate::state::{FieldChange, PlanConflict, PlanItem, plan_named};
use crate::store::Version;

/// The fields that differ from `old` to `new`, in the order of the spec.
pub fn diff_schedules(old: &ScheduleSpec, new: &ScheduleSpec) -> Vec<FieldChange> {
    let what = |s: &ScheduleSpec| serde_json::to_string(&s.what).unwrap_or_default();
    let pairs = [
        ("cron", old.cron.clone(), new.cron.clone()),
        ("tz", old.tz.clone(), new.tz.clone()),
        ("what", what(old), what(new)),
        (
            "overlap",
            old.overlap.as_str().to_string(),
            new.overlap.as_str().to_string(),
        ),
        ("missed", old.missed.display(), new.missed.display()),
        (
            "grace_secs",
            old.grace_secs.to_string(),
            new.grace_secs.to_string(),
        ),
        (
            "jitter_secs",
            old.jitter_secs.to_string(),
            new.jitter_secs.to_string(),
        ),
        ("paused", old.paused.to_string(), new.paused.to_string()),
    ];
    FieldChange::changed(pairs)
}

/// Plans applying `specs` over `current` (every stored schedule of the tenant, by name, with
/// its version). Items come in the order of `specs`, then the pruned schedules in name order.
/// `expect` holds the versions the caller planned against (0 = absent); when it is given (even
/// empty: the earlier plan showed no schedule), pruning may only delete schedules it names.
pub fn plan_schedules(
    current: &BTreeMap<String, (StoredSchedule, Version)>,
    specs: &[ScheduleSpec],
    prune: bool,
    expect: Option<&BTreeMap<String, Version>>,
) -> Result<Vec<PlanItem>, PlanConflict> {
    let declared = specs.iter().map(|s| (s.name.as_str(), s));
    plan_named("schedule", current, declared, prune, expect, |old, new| {
        diff_schedules(&old.spec, new)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::{JobSpec, Missed, Overlap, What};
    use crate::state::{PlanAction, actions};

    fn spec(name: &str, cron: &str) -> ScheduleSpec {
        let job = JobSpec {
            command: Some("true".into()),
            ..JobSpec::default()
        };
        crate::schedule::test_spec(name, cron, job)
    }

    fn stored(specs: &[(ScheduleSpec, Version)]) -> BTreeMap<String, (StoredSchedule, Version)> {
        specs
            .iter()
            .map(|(s, v)| {
                let st = StoredSchedule {
                    spec: s.clone(),
                    created_at: 1,
                    updated_at: 1,
                    updated_by: "me".into(),
                    active_since: 1,
                };
                (s.name.clone(), (st, *v))
            })
            .collect()
    }

    #[test]
    fn each_declared_schedule_is_created_updated_or_unchanged() {
        let current = stored(&[(spec("a", "@daily"), 3), (spec("b", "@daily"), 4)]);
        let want = [
            spec("c", "@daily"),
            spec("b", "@hourly"),
            spec("a", "@daily"),
        ];
        let items = plan_schedules(&current, &want, false, None).unwrap();
        assert_eq!(
            actions(&items),
            [
                ("c", PlanAction::Create, 0, None),
                ("b", PlanAction::Update, 4, None),
                ("a", PlanAction::Unchanged, 3, Some(3)),
            ]
        );
        assert_eq!(
            items[1].changes,
            vec![FieldChange {
                field: "cron".into(),
                from: "@daily".into(),
                to: "@hourly".into()
            }]
        );
    }

    #[test]
    fn every_field_of_the_spec_shows_in_a_diff() {
        let old = spec("a", "@daily");
        let mut new = old.clone();
        new.tz = "Europe/Berlin".into();
        new.what = What::Job(JobSpec {
            command: Some("false".into()),
            ..JobSpec::default()
        });
        new.overlap = Overlap::Skip;
        new.missed = Missed::CatchUp(2);
        new.grace_secs = 10;
        new.jitter_secs = 5;
        new.paused = true;
        let d = diff_schedules(&old, &new);
        let fields: Vec<&str> = d.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "tz",
                "what",
                "overlap",
                "missed",
                "grace_secs",
                "jitter_secs",
                "paused"
            ]
        );
        assert_eq!(d[1].to, r#"{"job":{"command":"false"}}"#);
        assert_eq!(d[3].to, "catch_up=2");
        assert!(diff_schedules(&new, &new).is_empty());
    }

    #[test]
    fn only_pruning_deletes_what_the_file_does_not_declare() {
        let current = stored(&[(spec("a", "@daily"), 3), (spec("cli", "@daily"), 9)]);
        let want = [spec("a", "@daily")];
        let kept = plan_schedules(&current, &want, false, None).unwrap();
        assert_eq!(actions(&kept), [("a", PlanAction::Unchanged, 3, Some(3))]);
        let pruned = plan_schedules(&current, &want, true, None).unwrap();
        assert_eq!(
            actions(&pruned),
            [
                ("a", PlanAction::Unchanged, 3, Some(3)),
                ("cli", PlanAction::Delete, 9, Some(0)),
            ]
        );
        // A file with no schedule at all prunes every schedule, as it does states.
        let all = plan_schedules(&current, &[], true, None).unwrap();
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|i| i.action == PlanAction::Delete));
        // An earlier plan that showed no schedule prunes none that appeared since.
        let none_seen = BTreeMap::new();
        assert!(plan_schedules(&current, &[], true, Some(&none_seen)).is_err());
    }

    #[test]
    fn a_plan_against_moved_or_unseen_schedules_is_a_conflict() {
        let current = stored(&[(spec("a", "@daily"), 3), (spec("new", "@daily"), 7)]);
        let want = [spec("a", "@hourly"), spec("new", "@daily")];
        let ok: BTreeMap<String, Version> = [("a".into(), 3), ("new".into(), 7)].into();
        assert!(plan_schedules(&current, &want, false, Some(&ok)).is_ok());
        let moved: BTreeMap<String, Version> = [("a".into(), 2)].into();
        assert_eq!(
            plan_schedules(&current, &want, false, Some(&moved))
                .unwrap_err()
                .0,
            "schedule a is at version 3, not 2 as planned; run diff again"
        );
        let created_since: BTreeMap<String, Version> = [("a".into(), 3), ("new".into(), 0)].into();
        assert!(plan_schedules(&current, &want, false, Some(&created_since)).is_err());
        let seen: BTreeMap<String, Version> = [("a".into(), 3)].into();
        assert_eq!(
            plan_schedules(&current, &want[..1], true, Some(&seen))
                .unwrap_err()
                .0,
            "schedule new appeared after the plan was made and would be pruned unseen; run diff again"
        );
    }
}
