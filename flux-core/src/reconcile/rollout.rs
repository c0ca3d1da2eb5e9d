//! A desired state's rollout, pure: how many of its targets may repair at once, and whether its
//! remediation is halted. A state with `rollout = { max_concurrency = .., max_errors = .. }`
//! ([`crate::state::StateRollout`]) bounds its repairs as an ad-hoc rollout bounds its runs
//! ([`crate::rollout`]): the same limits, read by the same code. No I/O: the reconciler's
//! driver (`mod.rs`) reads the targets' records and the state's [`StateRolloutStatus`], asks
//! [`Gate::of`] what this pass may start, and commits.
//!
//! Rules:
//! - a target *repairs* (holds a slot) from the moment its apply job is recorded until its
//!   verifying check is seen ended: its in-flight job is an apply or a verify;
//! - a failed repair (the apply failed, or the check still failed after it) counts once against
//!   `max_errors`, over the state's current version only;
//! - once more than `max_errors` repairs failed (less those a resume forgave), no new apply
//!   starts: remediation halts (compliant targets go on being checked; a target whose apply
//!   is held keeps its last check's result until the halt is lifted). The halt is recorded durably
//!   ([`StateRolloutStatus`], `state_rollout/{name}`) and lasts until the state gets a new
//!   version or is resumed.
//!
//! Guarantees (unit tested below): repairs holding a slot never exceed `max_concurrency`
//! whatever the input (slots are counted after every other step of the pass, then granted one
//! by one); a halted state is granted no apply; a halt or a resume recorded for another version
//! of the state halts (or forgives) nothing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::step::{StepKind, TargetStatus};
use crate::model::Millis;
use crate::rollout::{Limit, concurrency};
use crate::state::StateRollout;
use crate::store::Version;

/// The halt of a state's remediation and what a resume forgave, stored at
/// `state_rollout/{name}`. It speaks for one version of the state: a new version makes it stale.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRolloutStatus {
    /// The version of the state this record is about.
    pub version: Version,
    /// When remediation halted (none: not halted).
    pub halted_at: Option<Millis>,
    /// Failed repairs counted when it halted.
    #[serde(default)]
    pub halted_errors: u64,
    /// Failed repairs of this version that a resume forgave, per target agent (they no longer
    /// count). Per target, so that a target leaving the state cannot lend its forgiveness to
    /// another's later failures.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub forgiven: BTreeMap<String, u64>,
    pub resumed_at: Option<Millis>,
    pub resumed_by: Option<String>,
}

/// A state's rollout as the API shows it (`StateView::rollout`).
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRolloutView {
    /// Repairs at once, resolved over the current targets.
    pub max_concurrency: usize,
    /// Failed repairs allowed over the current version.
    pub max_errors: u64,
    /// Targets repairing now.
    pub repairing: usize,
    /// Failed repairs over the current version that count (not forgiven).
    pub failed_repairs: u64,
    pub halted: bool,
    pub halted_at: Option<Millis>,
    pub resumed_at: Option<Millis>,
    pub resumed_by: Option<String>,
}

/// The limits of a rollout over `targets` targets. A spec that breaks the rules (it cannot be
/// stored so) falls back to the strictest: one at a time, no failure allowed.
pub fn budget(r: &StateRollout, targets: usize) -> (usize, u64) {
    let (c, e) = r.limits().unwrap_or((Limit::Count(1), Limit::Count(0)));
    (concurrency(c, targets), e.of(targets) as u64)
}

/// Whether a target's record holds a repair slot (its job in flight is an apply or a verify).
pub fn holds_slot(t: &TargetStatus) -> bool {
    t.in_flight
        .as_ref()
        .is_some_and(|f| matches!(f.kind, StepKind::Apply | StepKind::Verify))
}

/// Failed repairs over `version` that count: each target's, less what a resume forgave it.
pub fn counted_failures<'a>(
    targets: impl IntoIterator<Item = &'a TargetStatus>,
    version: Version,
    forgiven: Option<&BTreeMap<String, u64>>,
) -> u64 {
    targets
        .into_iter()
        .filter(|t| t.repair_failures_version == version)
        .map(|t| {
            let f = forgiven.and_then(|f| f.get(&t.agent)).copied().unwrap_or(0);
            t.repair_failures.saturating_sub(f)
        })
        .sum()
}

/// The record, if it speaks for `version`.
fn current(rec: Option<&StateRolloutStatus>, version: Version) -> Option<&StateRolloutStatus> {
    rec.filter(|r| r.version == version)
}

/// What one pass may start for one state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    pub max_concurrency: usize,
    pub max_errors: u64,
    /// Slots still free this pass.
    pub free: usize,
    /// Failed repairs that count.
    pub errors: u64,
    pub halted: bool,
    /// The record to write: the halt found this pass (none when already recorded, or none).
    pub halt: Option<StateRolloutStatus>,
}

impl Gate {
    /// The gate of a state with rollout `r` at `version`, over its targets as they will be
    /// once this pass's other steps land (`after`), `holding` of them holding a slot, and its
    /// stored record `rec`.
    pub fn of<'a>(
        r: &StateRollout,
        version: Version,
        after: impl IntoIterator<Item = &'a TargetStatus>,
        targets: usize,
        holding: usize,
        rec: Option<&StateRolloutStatus>,
        now: Millis,
    ) -> Gate {
        let (max_concurrency, max_errors) = budget(r, targets);
        let rec_now = current(rec, version);
        let errors = counted_failures(after, version, rec_now.map(|r| &r.forgiven));
        let recorded = rec_now.is_some_and(|r| r.halted_at.is_some());
        let halted = recorded || errors > max_errors;
        let halt = (halted && !recorded).then(|| StateRolloutStatus {
            version,
            halted_at: Some(now),
            halted_errors: errors,
            forgiven: rec_now.map(|r| r.forgiven.clone()).unwrap_or_default(),
            resumed_at: rec_now.and_then(|r| r.resumed_at),
            resumed_by: rec_now.and_then(|r| r.resumed_by.clone()),
        });
        Gate {
            max_concurrency,
            max_errors,
            free: max_concurrency.saturating_sub(holding),
            errors,
            halted,
            halt,
        }
    }

    /// Asks for one apply: granted (a slot taken), or why it waits.
    pub fn take(&mut self) -> Result<(), String> {
        if self.halted {
            return Err(format!(
                "remediation halted: {} failed repairs, over max_errors {} (resume with `fluxctl state resume`)",
                self.errors, self.max_errors
            ));
        }
        if self.free == 0 {
            return Err(format!(
                "waits for a repair slot (max_concurrency {})",
                self.max_concurrency
            ));
        }
        self.free -= 1;
        Ok(())
    }
}

/// The view of a state's rollout at `version` over its targets' records.
pub fn view(
    r: &StateRollout,
    version: Version,
    targets: &[TargetStatus],
    rec: Option<&StateRolloutStatus>,
) -> StateRolloutView {
    let (max_concurrency, max_errors) = budget(r, targets.len());
    let rec_now = current(rec, version);
    let errors = counted_failures(targets, version, rec_now.map(|r| &r.forgiven));
    StateRolloutView {
        max_concurrency,
        max_errors,
        repairing: targets.iter().filter(|t| holds_slot(t)).count(),
        failed_repairs: errors,
        halted: rec_now.is_some_and(|r| r.halted_at.is_some()) || errors > max_errors,
        halted_at: rec_now.and_then(|r| r.halted_at),
        resumed_at: rec_now.and_then(|r| r.resumed_at),
        resumed_by: rec_now.and_then(|r| r.resumed_by.clone()),
    }
}

/// The record a resume writes at `version`: no halt, and every failed repair counted so far
/// on each of `targets` forgiven.
pub fn resumed(
    version: Version,
    targets: &[TargetStatus],
    by: &str,
    now: Millis,
) -> StateRolloutStatus {
    let forgiven = targets
        .iter()
        .filter(|t| t.repair_failures_version == version && t.repair_failures > 0)
        .map(|t| (t.agent.clone(), t.repair_failures))
        .collect();
    StateRolloutStatus {
        version,
        halted_at: None,
        halted_errors: 0,
        forgiven,
        resumed_at: Some(now),
        resumed_by: Some(by.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::InFlight;
    use crate::rollout::LimitSpec;

    fn rollout(c: &str, e: u64) -> StateRollout {
        StateRollout {
            max_concurrency: Some(LimitSpec::Text(c.into())),
            max_errors: Some(LimitSpec::Count(e)),
        }
    }

    fn target(agent: &str, kind: Option<StepKind>, failures: u64, at: Version) -> TargetStatus {
        let mut t = TargetStatus::new("s", agent, 0);
        t.in_flight = kind.map(|kind| InFlight {
            kind,
            job_id: format!("j-{agent}"),
        });
        t.repair_failures = failures;
        t.repair_failures_version = at;
        t
    }

    #[test]
    fn limits_resolve_over_the_targets_like_an_ad_hoc_rollout() {
        assert_eq!(budget(&rollout("20%", 1), 10), (2, 1));
        assert_eq!(budget(&rollout("20%", 1), 3), (1, 1));
        assert_eq!(budget(&rollout("3", 0), 2), (2, 0));
        let pct = StateRollout {
            max_concurrency: None,
            max_errors: Some(LimitSpec::Text("50%".into())),
        };
        assert_eq!(budget(&pct, 5), (1, 3));
    }

    #[test]
    fn slots_are_never_granted_past_the_concurrency_whatever_the_input() {
        for max in 1..5u64 {
            for holding in 0..7usize {
                let r = rollout(&max.to_string(), 100);
                let mut g = Gate::of(&r, 1, [], 10, holding, None, 0);
                let granted = (0..10).filter(|_| g.take().is_ok()).count();
                assert_eq!(
                    holding + granted,
                    holding.max(max as usize),
                    "max {max} holding {holding}"
                );
            }
        }
        let r = rollout("2", 0);
        let mut g = Gate::of(&r, 1, [], 5, 2, None, 0);
        let why = g.take().unwrap_err();
        assert!(why.contains("max_concurrency 2"), "{why}");
    }

    #[test]
    fn more_failures_than_the_budget_halt_and_the_halt_is_recorded_once() {
        let r = rollout("2", 1);
        let one = [target("a", None, 1, 3), target("b", None, 0, 3)];
        let mut g = Gate::of(&r, 3, &one, 2, 0, None, 10);
        assert!(!g.halted && g.halt.is_none() && g.take().is_ok());
        // Two failures at this version: over max_errors 1.
        let two = [target("a", None, 1, 3), target("b", None, 1, 3)];
        let mut g = Gate::of(&r, 3, &two, 2, 0, None, 10);
        assert!(g.halted);
        assert!(g.take().unwrap_err().contains("halted"));
        let rec = g.halt.clone().unwrap();
        assert_eq!(
            (rec.version, rec.halted_at, rec.halted_errors),
            (3, Some(10), 2)
        );
        // Recorded: still halted, nothing more to write.
        let g = Gate::of(&r, 3, &two, 2, 0, Some(&rec), 20);
        assert!(g.halted && g.halt.is_none());
        // Failures of another version do not count.
        let old = [target("a", None, 5, 2)];
        assert!(!Gate::of(&r, 3, &old, 2, 0, None, 10).halted);
    }

    #[test]
    fn a_new_version_or_a_resume_lifts_the_halt() {
        let r = rollout("1", 0);
        let failed = [target("a", None, 1, 3)];
        let halted = Gate::of(&r, 3, &failed, 1, 0, None, 10).halt.unwrap();
        // The state changed: the record speaks for version 3 only.
        let mut g = Gate::of(&r, 4, &failed, 1, 0, Some(&halted), 20);
        assert!(!g.halted && g.take().is_ok());
        // Resumed: the failures so far are forgiven, a new one halts again.
        let res = resumed(3, &failed, "alice", 30);
        let mut g = Gate::of(&r, 3, &failed, 1, 0, Some(&res), 40);
        assert!(!g.halted && g.take().is_ok());
        let again = [target("a", None, 2, 3)];
        let g = Gate::of(&r, 3, &again, 1, 0, Some(&res), 50);
        assert!(g.halted);
        let rec = g.halt.unwrap();
        assert_eq!(
            (rec.forgiven.get("a"), rec.resumed_by.as_deref()),
            (Some(&1), Some("alice"))
        );
    }

    /// A resume forgives each target its own failures: when a forgiven target leaves the
    /// state, the others' later failures still count in full.
    #[test]
    fn forgiveness_is_per_target_and_does_not_pass_to_another() {
        let r = rollout("1", 0);
        let before = [target("a", None, 2, 3), target("b", None, 1, 3)];
        let res = resumed(3, &before, "alice", 30);
        assert!(!Gate::of(&r, 3, &before, 2, 0, Some(&res), 40).halted);
        // b leaves; a fails once more: one failure counts, over max_errors 0.
        let after = [target("a", None, 3, 3)];
        let g = Gate::of(&r, 3, &after, 1, 0, Some(&res), 50);
        assert!(g.halted && g.errors == 1, "{g:?}");
    }

    #[test]
    fn the_view_counts_repairs_in_flight_and_failures_that_count() {
        let r = rollout("50%", 1);
        let ts = [
            target("a", Some(StepKind::Apply), 1, 7),
            target("b", Some(StepKind::Verify), 0, 7),
            target("c", Some(StepKind::Check), 1, 7),
            target("d", None, 3, 6),
        ];
        let v = view(&r, 7, &ts, None);
        assert_eq!(
            (
                v.max_concurrency,
                v.max_errors,
                v.repairing,
                v.failed_repairs,
                v.halted
            ),
            (2, 1, 2, 2, true)
        );
        let res = resumed(7, &ts, "bob", 5);
        let v = view(&r, 7, &ts, Some(&res));
        assert!(!v.halted && v.failed_repairs == 0 && v.resumed_by.as_deref() == Some("bob"));
    }
}
