//! The pure firing policy: given a schedule's settings, where its firing stands, whether its
//! previous run is unfinished and the time, what the leader does next. No I/O; the driver
//! ([`super::driver`]) reads, calls [`decide`], commits what it returns, and calls it again.
//!
//! Terms: a *slot* is an instant the cron expression names ([`super::cron`]); a slot is *due*
//! once the time is past the slot plus its jitter; a due slot is *late* when the time is more
//! than `grace` past its due instant (the leader was not there to fire it: the cluster was
//! down, or longer than `grace` without a leader). Late slots follow `missed`:
//! `skip` (none run), `once` (the newest late slot runs), `catch_up = N` (the newest N run).
//! A slot that is due but not late always runs (a failover shorter than `grace` loses
//! nothing). A slot to run while the previous run is unfinished follows `overlap`: `allow`
//! (it runs), `skip` (it does not), `queue` (it runs once the previous run finishes; one slot
//! is kept queued at most, a further one is skipped).
//!
//! Guarantees:
//! - [`decide`] is a function of its arguments only; every leader computes the same decision
//!   from the same record, the jitter included ([`jitter`] hashes the schedule and the slot);
//! - the cursor only moves forward: a decision never returns a slot at or before
//!   `cursor.last_slot` nor before `active_since`, so a slot is decided once;
//! - work per call is bounded ([`MAX_SLOTS_PER_DECISION`]), however long the cluster was down.

use serde::{Deserialize, Serialize};

use crate::model::Millis;
use crate::named::named_enum;

named_enum! {
    /// What a slot does while the previous run is unfinished.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum Overlap {
        #[default]
        Allow,
        Skip,
        Queue,
    }
}

/// What happens to slots that went by without a leader to fire them (see the module doc).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missed {
    Skip,
    #[default]
    Once,
    CatchUp(u32),
}

impl Missed {
    /// How many of the late slots run.
    fn keep(self) -> usize {
        match self {
            Missed::Skip => 0,
            Missed::Once => 1,
            Missed::CatchUp(n) => n as usize,
        }
    }

    pub fn display(self) -> String {
        match self {
            Missed::Skip => "skip".into(),
            Missed::Once => "once".into(),
            Missed::CatchUp(n) => format!("catch_up={n}"),
        }
    }
}

/// Where a schedule's firing stands (kept in its status record).
#[serde_with::skip_serializing_none]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last slot decided (fired, queued, skipped or missed); later slots are still open.
    pub last_slot: Option<Millis>,
    /// A slot waiting for the previous run to finish (`overlap = queue`).
    pub queued: Option<Millis>,
}

/// The settings the policy reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    pub overlap: Overlap,
    pub missed: Missed,
    /// How long past its due instant a slot still runs as on time.
    pub grace_ms: Millis,
    /// Largest delay added to a slot.
    pub jitter_ms: Millis,
    /// Seed of the jitter (a hash of the tenant and the schedule name).
    pub seed: u64,
    /// Slots at or before this instant never run (creation, resume, a changed expression).
    pub active_since: Millis,
}

/// What to do now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Nothing until `until` (the next slot's due instant), if the expression fires again.
    Wait { until: Option<Millis> },
    /// Commit `cursor` (with a run of `fire`, if given) in one transaction.
    Advance(Step),
}

/// One step of a schedule's firing: the slot to run now (if any) and the new cursor.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// The slot whose run starts in this step.
    pub fire: Option<Millis>,
    /// Whether `fire` is a slot that was queued behind an unfinished run.
    pub from_queue: bool,
    pub cursor: Cursor,
    /// Late slots given up by `missed`.
    pub missed: u64,
    /// Slots given up by `overlap = skip` (or a full queue).
    pub skipped: u64,
    /// Time from the fired slot's due instant to `now`.
    pub lag_ms: Millis,
}

/// Slots looked at per decision at most; a longer backlog is worked off over several steps.
pub const MAX_SLOTS_PER_DECISION: usize = 100_000;

/// A seed for [`jitter`] from the tenant and the schedule name (FNV-1a: the same on every node
/// and every build).
pub fn seed(tenant: &str, name: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in tenant.bytes().chain([0u8]).chain(name.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The delay of `slot`, in `0..=max_ms`, derived from the seed and the slot (splitmix64).
pub fn jitter(seed: u64, slot: Millis, max_ms: Millis) -> Millis {
    if max_ms == 0 {
        return 0;
    }
    let mut z = seed ^ slot.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    z % (max_ms + 1)
}

/// Decides the next step. `next_slot(t)` is the first slot strictly after `t`; `running`
/// whether the previous run is unfinished.
pub fn decide(
    s: &Settings,
    cursor: Cursor,
    running: bool,
    now: Millis,
    next_slot: impl Fn(Millis) -> Option<Millis>,
) -> Decision {
    let due = |slot: Millis| slot.saturating_add(jitter(s.seed, slot, s.jitter_ms));
    // A queued slot runs as soon as the run before it has finished.
    if let Some(q) = cursor.queued
        && !running
    {
        return Decision::Advance(Step {
            fire: Some(q),
            from_queue: true,
            cursor: Cursor {
                queued: None,
                ..cursor
            },
            lag_ms: now.saturating_sub(due(q)),
            ..Step::default()
        });
    }
    let start = cursor
        .last_slot
        .map_or(s.active_since, |l| l.max(s.active_since));
    // The due slots, oldest first (bounded).
    let mut due_slots = Vec::new();
    let mut t = start;
    let mut next_due = None;
    while due_slots.len() < MAX_SLOTS_PER_DECISION {
        match next_slot(t) {
            Some(slot) if due(slot) <= now => {
                due_slots.push(slot);
                t = slot;
            }
            Some(slot) => {
                next_due = Some(due(slot));
                break;
            }
            None => break,
        }
    }
    let Some(&last_due) = due_slots.last() else {
        return Decision::Wait { until: next_due };
    };
    let late = due_slots
        .iter()
        .take_while(|&&slot| now.saturating_sub(due(slot)) > s.grace_ms)
        .count();
    // The late slots that run: the newest `keep` of them; then every on-time slot.
    let dropped = late - late.min(s.missed.keep());
    // A backlog longer than one decision looks at, all late: the oldest slots of the window,
    // each followed by at least `keep` others, cannot be among the newest `keep`; they are
    // given up and the rest decided next time.
    if due_slots.len() == MAX_SLOTS_PER_DECISION && late == due_slots.len() {
        let give_up = due_slots.len() - s.missed.keep().min(due_slots.len() - 1);
        return Decision::Advance(Step {
            cursor: Cursor {
                last_slot: Some(due_slots[give_up - 1]),
                ..cursor
            },
            missed: give_up as u64,
            ..Step::default()
        });
    }
    let Some(&slot) = due_slots.get(dropped) else {
        return Decision::Advance(Step {
            cursor: Cursor {
                last_slot: Some(last_due),
                ..cursor
            },
            missed: dropped as u64,
            ..Step::default()
        });
    };
    let mut step = Step {
        cursor: Cursor {
            last_slot: Some(slot),
            ..cursor
        },
        missed: dropped as u64,
        ..Step::default()
    };
    match (running, s.overlap) {
        (true, Overlap::Skip) => step.skipped = 1,
        (true, Overlap::Queue) if cursor.queued.is_none() => step.cursor.queued = Some(slot),
        (true, Overlap::Queue) => step.skipped = 1,
        _ => {
            step.fire = Some(slot);
            step.lag_ms = now.saturating_sub(due(slot));
        }
    }
    Decision::Advance(step)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule firing every `every` ms from 0.
    fn every(every: Millis) -> impl Fn(Millis) -> Option<Millis> {
        move |t| Some((t / every + 1) * every)
    }

    fn settings(overlap: Overlap, missed: Missed) -> Settings {
        Settings {
            overlap,
            missed,
            grace_ms: 5_000,
            jitter_ms: 0,
            seed: 1,
            active_since: 0,
        }
    }

    /// Runs decisions to a standstill at `now` (no run finishing meanwhile unless `finish`):
    /// the slots fired, the final cursor, missed and skipped counts.
    fn run(
        s: &Settings,
        mut cursor: Cursor,
        mut running: bool,
        now: Millis,
        finish_each: bool,
    ) -> (Vec<Millis>, Cursor, u64, u64) {
        let (mut fired, mut missed, mut skipped) = (vec![], 0, 0);
        for _ in 0..1000 {
            match decide(s, cursor, running, now, every(1000)) {
                Decision::Wait { .. } => return (fired, cursor, missed, skipped),
                Decision::Advance(step) => {
                    if let Some(f) = step.fire {
                        fired.push(f);
                        running = !finish_each;
                    }
                    cursor = step.cursor;
                    missed += step.missed;
                    skipped += step.skipped;
                }
            }
        }
        panic!("no standstill");
    }

    #[test]
    fn on_time_slots_fire_once_each_in_order() {
        let s = settings(Overlap::Allow, Missed::Skip);
        let (fired, cursor, missed, _) = run(&s, Cursor::default(), false, 3_500, true);
        assert_eq!(fired, [1000, 2000, 3000]);
        assert_eq!(cursor.last_slot, Some(3000));
        assert_eq!(missed, 0);
        // Asked again at the same time: nothing more, and the wait ends at the next slot.
        assert_eq!(
            decide(&s, cursor, false, 3_500, every(1000)),
            Decision::Wait { until: Some(4000) }
        );
    }

    #[test]
    fn a_gap_shorter_than_grace_loses_no_slot_whatever_missed_says() {
        for missed in [Missed::Skip, Missed::Once, Missed::CatchUp(1)] {
            let s = settings(Overlap::Allow, missed);
            let c = Cursor {
                last_slot: Some(10_000),
                queued: None,
            };
            // A failover of 4.5 s: slots 11..14 are due, none late.
            let (fired, _, m, _) = run(&s, c, false, 14_500, true);
            assert_eq!(fired, [11_000, 12_000, 13_000, 14_000], "{missed:?}");
            assert_eq!(m, 0);
        }
    }

    #[test]
    fn late_slots_follow_the_missed_policy() {
        let c = Cursor {
            last_slot: Some(10_000),
            queued: None,
        };
        // Down from 10.5 s to 30.2 s: slots 11..=30 due; late are those before 25.2 s.
        let now = 30_200;
        let on_time: Vec<Millis> = (26..=30).map(|i| i * 1000).collect();
        let (fired, cursor, missed, _) =
            run(&settings(Overlap::Allow, Missed::Skip), c, false, now, true);
        assert_eq!(fired, on_time);
        assert_eq!(missed, 15);
        assert_eq!(cursor.last_slot, Some(30_000));
        let (fired, _, missed, _) =
            run(&settings(Overlap::Allow, Missed::Once), c, false, now, true);
        assert_eq!(fired[0], 25_000);
        assert_eq!(&fired[1..], on_time);
        assert_eq!(missed, 14);
        let (fired, _, missed, _) = run(
            &settings(Overlap::Allow, Missed::CatchUp(3)),
            c,
            false,
            now,
            true,
        );
        assert_eq!(&fired[..3], [23_000, 24_000, 25_000]);
        assert_eq!(&fired[3..], on_time);
        assert_eq!(missed, 12);
        // Everything late, nothing on time: skip fires nothing and waits for the next slot.
        let (fired, cursor, missed, _) = run(
            &Settings {
                grace_ms: 0,
                ..settings(Overlap::Allow, Missed::Skip)
            },
            c,
            false,
            now,
            true,
        );
        assert!(fired.is_empty());
        assert_eq!(missed, 20);
        assert_eq!(cursor.last_slot, Some(30_000));
    }

    #[test]
    fn overlap_skip_and_queue_while_the_previous_run_is_unfinished() {
        let c = Cursor {
            last_slot: Some(1000),
            queued: None,
        };
        // The run of slot 1000 is still going at 4.5 s.
        let at_4_5s = |overlap| run(&settings(overlap, Missed::Once), c, true, 4_500, false);
        let (fired, cursor, _, skipped) = at_4_5s(Overlap::Skip);
        assert!(fired.is_empty());
        assert_eq!(skipped, 3);
        assert_eq!(cursor.last_slot, Some(4000));
        let (fired, cursor, _, skipped) = at_4_5s(Overlap::Queue);
        assert!(fired.is_empty());
        assert_eq!(cursor.queued, Some(2000));
        assert_eq!(skipped, 2);
        // Once it finishes, the queued slot runs, then nothing until the next slot.
        let s = settings(Overlap::Queue, Missed::Once);
        let Decision::Advance(step) = decide(&s, cursor, false, 4_600, every(1000)) else {
            panic!()
        };
        assert_eq!(step.fire, Some(2000));
        assert!(step.from_queue);
        assert_eq!(step.lag_ms, 2_600);
        assert_eq!(step.cursor.queued, None);
        assert!(matches!(
            decide(&s, step.cursor, true, 4_600, every(1000)),
            Decision::Wait { .. }
        ));
        // Allow runs them all at once.
        let (fired, _, _, _) = run(
            &settings(Overlap::Allow, Missed::Once),
            c,
            true,
            4_500,
            false,
        );
        assert_eq!(fired, [2000, 3000, 4000]);
    }

    #[test]
    fn nothing_fires_at_or_before_active_since() {
        let s = Settings {
            active_since: 5_500,
            ..settings(Overlap::Allow, Missed::CatchUp(10))
        };
        let (fired, _, missed, _) = run(&s, Cursor::default(), false, 8_000, true);
        assert_eq!(fired, [6000, 7000, 8000]);
        assert_eq!(missed, 0);
    }

    #[test]
    fn jitter_is_deterministic_bounded_and_delays_the_slot() {
        let sd = seed("acme", "backup");
        assert_eq!(sd, seed("acme", "backup"));
        assert_ne!(sd, seed("acme", "backupx"));
        assert_ne!(seed("a", "bc"), seed("ab", "c"));
        let js: Vec<Millis> = (0..200).map(|i| jitter(sd, i * 1000, 300)).collect();
        assert!(js.iter().all(|&j| j <= 300));
        assert!(js.iter().any(|&j| j != js[0]), "jitter never varies");
        let s = Settings {
            jitter_ms: 300,
            seed: sd,
            ..settings(Overlap::Allow, Missed::Once)
        };
        let j = jitter(sd, 1000, 300);
        assert_eq!(
            decide(&s, Cursor::default(), false, 999 + j, every(1000)),
            Decision::Wait {
                until: Some(1000 + j)
            }
        );
        let Decision::Advance(step) = decide(&s, Cursor::default(), false, 1000 + j, every(1000))
        else {
            panic!()
        };
        assert_eq!(step.fire, Some(1000));
    }

    #[test]
    fn a_very_long_backlog_is_bounded_per_decision() {
        let s = Settings {
            grace_ms: 0,
            ..settings(Overlap::Allow, Missed::Once)
        };
        let now = 300_000_000; // 300,000 one-second slots
        let (fired, cursor, missed, _) = run(&s, Cursor::default(), false, now, true);
        // The newest late slot (`once`) and the slot due right now (on time) run.
        assert_eq!(fired, [now - 1000, now]);
        assert_eq!(missed + 2, 300_000);
        assert_eq!(cursor.last_slot, Some(now));
    }
}
