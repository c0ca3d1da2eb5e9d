//! The events of rollouts and schedules: one constructor per transition, so that the drivers
//! add each with one [`super::record`] line in the transaction that makes the change.
//!
//! Guarantees:
//! - Every event built here has a type of [`super::TYPES`] (so the type filters and the
//!   webhooks' `events` accept it) and names its object the way the API does: a rollout's id,
//!   a schedule's name.
//! - Pure: nothing here reads or writes the store.

use serde_json::json;

use super::Event;
use crate::model::Millis;
use crate::rollout::{Control, Rollout, RolloutStatus, Target};

/// `rollout.created`, with its target count and the rollout it retries.
pub fn rollout_created(r: &Rollout, at: Millis) -> Event {
    Event::new("rollout.created", r.rollout_id.clone(), at).data(json!({
        "targets": r.targets.len(),
        "retry_of": r.retry_of,
        "created_by": r.created_by,
    }))
}

/// `rollout.paused` or `rollout.resumed` for a user's control that moved the rollout to
/// `next`; `None` for a cancel (its end is `rollout.finished` with `cancelled`).
pub fn rollout_control(r: &Rollout, c: Control, next: RolloutStatus, at: Millis) -> Option<Event> {
    let kind = match c {
        Control::Pause => "rollout.paused",
        Control::Resume => "rollout.resumed",
        Control::Cancel => return None,
    };
    Some(Event::new(kind, r.rollout_id.clone(), at).data(json!({ "status": next.as_str() })))
}

/// `rollout.target_started`: the run job of target `t` was created.
pub fn rollout_target_started(id: &str, t: &Target, job_id: &str, at: Millis) -> Event {
    let mut e = Event::new("rollout.target_started", id, at).data(json!({
        "job_id": job_id,
        "canary": t.canary,
    }));
    e.node_id = Some(t.node_id.clone());
    e
}

/// `rollout.target_finished`: target `t` (as updated) ended, with its outcome.
pub fn rollout_target_finished(id: &str, t: &Target, at: Millis) -> Event {
    let mut e = Event::new("rollout.target_finished", id, at).data(json!({
        "outcome": t.state.as_str(),
        "exit_code": t.exit_code,
        "error": t.error,
        "job_id": t.job_id,
        "canary": t.canary,
    }));
    e.node_id = Some(t.node_id.clone());
    e
}

/// `rollout.halted`: the budget stopped the rollout (nothing new starts).
pub fn rollout_halted(id: &str, reason: &str, at: Millis) -> Event {
    Event::new("rollout.halted", id, at).data(json!({ "reason": reason }))
}

/// `rollout.finished`, with its result.
pub fn rollout_finished(id: &str, result: RolloutStatus, at: Millis) -> Event {
    Event::new("rollout.finished", id, at).data(json!({ "result": result.as_str() }))
}

/// `schedule.fired`: schedule `name` started its run of slot `slot` (`None` for a manual
/// trigger), with the jobs or the rollout it started.
pub fn schedule_fired(
    name: &str,
    slot: Option<Millis>,
    jobs: &[String],
    rollout: Option<&str>,
    error: Option<&str>,
    at: Millis,
) -> Event {
    Event::new("schedule.fired", name, at).data(json!({
        "slot": slot,
        "jobs": jobs,
        "rollout": rollout,
        "error": error,
    }))
}

/// `schedule.skipped`: `count` slots given up, for `reason`: `overlap` (a run was still going
/// under `overlap = skip`, or the queue of one was full) or `quota` (the tenant's `max_queued`).
pub fn schedule_skipped(name: &str, count: u64, reason: &str, at: Millis) -> Event {
    Event::new("schedule.skipped", name, at).data(json!({ "count": count, "reason": reason }))
}

/// `schedule.missed`: `count` late slots given up by the schedule's `missed` policy.
pub fn schedule_missed(name: &str, count: u64, at: Millis) -> Event {
    Event::new("schedule.missed", name, at).data(json!({ "count": count }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constructor_builds_a_known_type() {
        let t = Target::new("a1", true);
        let evs = [
            rollout_target_started("r1", &t, "j1", 1),
            rollout_target_finished("r1", &t, 1),
            rollout_halted("r1", "budget", 1),
            rollout_finished("r1", RolloutStatus::Halted, 1),
            schedule_fired("s", Some(1000), &["j".into()], None, None, 1),
            schedule_skipped("s", 2, "overlap", 1),
            schedule_missed("s", 3, 1),
        ];
        for e in &evs {
            assert!(super::super::TYPES.contains(&e.kind.as_str()), "{}", e.kind);
        }
        assert_eq!(evs[1].node_id.as_deref(), Some("a1"));
        assert_eq!(evs[3].data["result"], "halted");
        assert_eq!(evs[5].data["count"], 2);
        let f = super::super::Filter::default()
            .with_types("rollout.*,schedule.missed")
            .unwrap();
        assert!(f.matches(&evs[0]) && f.matches(&evs[6]) && !f.matches(&evs[4]));
        // A webhook takes them by name or wildcard.
        let req = crate::webhooks::CreateWebhook {
            name: "ops".into(),
            url: "https://hooks.example.com/x".into(),
            events: vec![
                "rollout.*".into(),
                "schedule.missed".into(),
                "rollout.target_finished".into(),
            ],
            ..Default::default()
        };
        crate::webhooks::validate(&req, false, "admin", 1, super::super::Position::default())
            .unwrap();
    }
}
