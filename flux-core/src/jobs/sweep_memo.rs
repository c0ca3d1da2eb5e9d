//! Which agents a liveness sweep has to judge. Judging every agent of a large fleet at every
//! sweep costs a lookup per agent (at 100,000 idle agents, most of the leader's sweep), while
//! almost none of them can be due: silence moves an agent down only, and hearing from an agent
//! only moves its last-heard time later (this node forgets what it heard of an agent only once
//! it is older than `dead_after`, when that agent is due whatever the memo says, and any change
//! of the other nodes' records changes the memo's basis). So a full judging notes the earliest
//! time an agent online then could be due, and until that time the sweeps after it judge only
//! the agents that were not online (hearing from one may bring it back at any moment). Plain
//! data; pure.

use std::time::Duration;

use super::liveness::judge;
use super::placement::Fleet;
use crate::model::{AgentState, Millis};

/// How long one full judging serves the sweeps after it at most, whatever it says: a bound on
/// what a mistake in what it relies on could cost.
pub const MEMO_FOR: Millis = 10_000;

/// What a full judging was made on. A sweep on a different basis judges every agent again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoBasis {
    /// The fleet view's revision (it grows with every agent record the view reads): the same
    /// agents, in the same states, with the same `last_seen` and revocations.
    pub fleet: u64,
    /// The published liveness records that counted, as `(node, seq, published_at)`: a record
    /// that changes or stops counting may move an agent's last-heard time either way.
    pub records: Vec<(String, u64, Millis)>,
    /// The leader's grace (its election).
    pub grace_from: Millis,
}

/// The thresholds agents are judged by.
#[derive(Clone, Copy, Debug)]
pub struct Silence {
    pub unreachable_after: Duration,
    pub dead_after: Duration,
}

/// What the last full judging of a tenant's fleet leaves to the sweeps after it.
#[derive(Clone, Debug, Default)]
pub struct SweepMemo {
    basis: Option<MemoBasis>,
    judged_at: Millis,
    /// No agent online at the full judging is due before this.
    quiet_until: Millis,
    /// The agents that were not online then (and not revoked), judged at every sweep.
    watch: Vec<String>,
    /// Full judgings made, for tests.
    full: u64,
}

impl SweepMemo {
    /// The node ids of `fleet`'s agents that [`judge`] moves at `now`, each judged on the later
    /// of its record's `last_seen` and `heard_at` (revoked agents aside: the sweep takes them
    /// as dead). The same answer as judging every agent, which is what it does when the memo
    /// does not hold; then it renews the memo.
    pub fn due(
        &mut self,
        fleet: &Fleet,
        basis: MemoBasis,
        heard_at: &dyn Fn(&str) -> Option<Millis>,
        now: Millis,
        silence: Silence,
    ) -> Vec<String> {
        let grace_from = basis.grace_from;
        let last_of = |node_id: &str, last_seen: Millis| {
            heard_at(node_id).map_or(last_seen, |at| last_seen.max(at))
        };
        let is_due = |state: AgentState, last: Millis| {
            let (u, d) = (silence.unreachable_after, silence.dead_after);
            judge(state, last, now, grace_from, u, d).is_some()
        };
        if self.holds(&basis, now) {
            return self
                .watch
                .iter()
                .filter(|id| {
                    fleet
                        .agent(id)
                        .is_some_and(|s| !s.revoked && is_due(s.state, last_of(id, s.last_seen)))
                })
                .cloned()
                .collect();
        }
        // Silence moves an online agent at the first of the two thresholds (dead_after may be
        // set below unreachable_after); a zero threshold moves it at once.
        let first_ms = silence
            .unreachable_after
            .min(silence.dead_after)
            .as_millis() as u64;
        let mut due = Vec::new();
        let mut watch = Vec::new();
        let mut quiet_until = Millis::MAX;
        for (node_id, slot) in fleet.agents() {
            if slot.revoked {
                continue;
            }
            let last = last_of(node_id, slot.last_seen);
            if is_due(slot.state, last) {
                due.push(node_id.clone());
            }
            if slot.state == AgentState::Online {
                let due_at = match first_ms {
                    0 => 0,
                    ms => last.max(grace_from).saturating_add(ms),
                };
                quiet_until = quiet_until.min(due_at);
            } else {
                watch.push(node_id.clone());
            }
        }
        *self = SweepMemo {
            basis: Some(basis),
            judged_at: now,
            quiet_until,
            watch,
            full: self.full + 1,
        };
        due
    }

    /// Whether a sweep on `basis` at `now` may judge the watched agents alone.
    fn holds(&self, basis: &MemoBasis, now: Millis) -> bool {
        self.basis.as_ref() == Some(basis)
            && now >= self.judged_at
            && now < self.judged_at.saturating_add(MEMO_FOR)
            && now < self.quiet_until
    }

    /// How many full judgings this memo has made.
    pub fn full_judgings(&self) -> u64 {
        self.full
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::*;
    use crate::jobs::liveness::tests::agent;
    use crate::jobs::placement::Slot;

    const SILENCE: Silence = Silence {
        unreachable_after: Duration::from_millis(6_000),
        dead_after: Duration::from_millis(15_000),
    };

    /// The thresholds of the random fleets: the defaults' shape, a dead window set below the
    /// unreachable one, and zero.
    const SILENCES: [(u64, u64); 4] =
        [(6_000, 15_000), (6_000, 3_000), (0, 15_000), (4_000, 4_000)];

    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    /// The transition `judge` makes for the agent `id` of `s`, and the last-heard time it
    /// was judged on.
    fn verdict(
        id: &str,
        s: &Slot,
        heard: &HashMap<String, Millis>,
        now: Millis,
        grace_from: Millis,
        silence: Silence,
    ) -> Option<(AgentState, Millis)> {
        let last = heard.get(id).map_or(s.last_seen, |at| s.last_seen.max(*at));
        let next = judge(
            s.state,
            last,
            now,
            grace_from,
            silence.unreachable_after,
            silence.dead_after,
        )?;
        Some((next, last))
    }

    /// Every agent judged, as a sweep did before the memo.
    fn judged_all(
        fleet: &Fleet,
        heard: &HashMap<String, Millis>,
        now: Millis,
        grace_from: Millis,
        silence: Silence,
    ) -> Vec<String> {
        fleet
            .agents()
            .filter(|(id, s)| {
                !s.revoked && verdict(id, s, heard, now, grace_from, silence).is_some()
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    fn slot(id: &str, state: AgentState, last_seen: Millis, revoked: bool) -> Slot {
        let mut a = agent(state, last_seen, true);
        a.node_id = id.into();
        if revoked {
            a.revoked_at = Some(last_seen);
        }
        Slot::of(&a, 1)
    }

    /// Random fleets heard from, changed, re-published and swept at random times: the memo's
    /// answer is every agent's judgement at every sweep, and most sweeps are not full ones.
    #[test]
    fn a_sweep_on_the_memo_finds_the_agents_a_full_judging_finds() {
        let states = [
            AgentState::Online,
            AgentState::Unreachable,
            AgentState::Dead,
        ];
        let mut sweeps = 0;
        let mut full = 0;
        for seed in 0..300 {
            let mut rng = Lcg(seed);
            let (u, d) = SILENCES[seed as usize % SILENCES.len()];
            let silence = Silence {
                unreachable_after: Duration::from_millis(u),
                dead_after: Duration::from_millis(d),
            };
            let n = 1 + rng.next(30);
            let mut now: Millis = 100_000;
            let mut fleet = Fleet::default();
            let mut revision = 0;
            let mut heard: HashMap<String, Millis> = HashMap::new();
            let mut records: Vec<(String, u64, Millis)> = Vec::new();
            let mut grace_from = 0;
            let mut seq = 0;
            // One agent in four falls silent: the others are heard from now and then.
            let mut silent = Vec::new();
            for i in 0..n {
                let id = format!("a{i:02}");
                let last = now - rng.next(20_000);
                let s = states[rng.next(3) as usize];
                fleet.upsert(&id, slot(&id, s, last, rng.next(10) == 0));
                revision += 1;
                if rng.next(4) == 0 {
                    silent.push(id);
                }
            }
            let mut memo = SweepMemo::default();
            for _ in 0..60 {
                for i in 0..n {
                    let id = format!("a{i:02}");
                    if rng.next(3) == 0 && !silent.contains(&id) {
                        let at = now - rng.next(1_000);
                        let e = heard.entry(id).or_insert(at);
                        *e = (*e).max(at);
                    }
                }
                match rng.next(30) {
                    // Its record changes in the view (a transition, a registration).
                    0 => {
                        let id = format!("a{:02}", rng.next(n));
                        let s = states[rng.next(3) as usize];
                        fleet.upsert(&id, slot(&id, s, now - rng.next(10_000), false));
                        revision += 1;
                    }
                    // Another node publishes (which may also lower what was heard).
                    1 => {
                        seq += 1;
                        records = vec![("fluxd-2".into(), seq, now)];
                        if let Some(at) = heard.values_mut().next() {
                            *at = at.saturating_sub(rng.next(5_000));
                        }
                    }
                    // A grace from a clock ahead of this one, or from before.
                    2 => grace_from = now + 1_000 - rng.next(3_000),
                    _ => {}
                }
                now += rng.next(1_000);
                let basis = MemoBasis {
                    fleet: revision,
                    records: records.clone(),
                    grace_from,
                };
                let heard_at = |id: &str| heard.get(id).copied();
                let got = memo.due(&fleet, basis, &heard_at, now, silence);
                let want = judged_all(&fleet, &heard, now, grace_from, silence);
                assert_eq!(got, want, "seed {seed}, now {now}");
                sweeps += 1;
                // The sweep marks them, and the view reads the records it wrote.
                for id in &got {
                    let s = fleet.agent(id).expect("a due agent is in the fleet");
                    let (next, last) =
                        verdict(id, s, &heard, now, grace_from, silence).expect("due");
                    fleet.upsert(id, slot(id, next, last, false));
                    revision += 1;
                }
            }
            full += memo.full_judgings();
        }
        // Not vacuous: the memo spared most sweeps a full judging.
        assert!(full * 2 < sweeps, "{full} full judgings in {sweeps} sweeps");
    }

    #[test]
    fn a_memo_serves_until_an_online_agent_can_be_due_and_no_longer_than_memo_for() {
        let mut fleet = Fleet::default();
        fleet.upsert("a1", slot("a1", AgentState::Online, 100_000, false));
        fleet.upsert("a2", slot("a2", AgentState::Dead, 50_000, false));
        let basis = |fleet| MemoBasis {
            fleet,
            records: vec![],
            grace_from: 0,
        };
        let heard = BTreeMap::from([("a1".to_string(), 103_000)]);
        let heard_at = |id: &str| heard.get(id).copied();
        let mut memo = SweepMemo::default();
        assert!(
            memo.due(&fleet, basis(1), &heard_at, 104_000, SILENCE)
                .is_empty()
        );
        assert_eq!(memo.full_judgings(), 1);
        // a1 is due at 103,000 + 6,000: until then only a2 is judged.
        assert!(
            memo.due(&fleet, basis(1), &heard_at, 108_999, SILENCE)
                .is_empty()
        );
        assert_eq!(memo.full_judgings(), 1);
        assert_eq!(
            memo.due(&fleet, basis(1), &heard_at, 109_000, SILENCE),
            ["a1"]
        );
        assert_eq!(memo.full_judgings(), 2);
        // Another basis, or a clock that went back, judges every agent again.
        memo.due(&fleet, basis(2), &heard_at, 109_000, SILENCE);
        memo.due(&fleet, basis(2), &heard_at, 108_000, SILENCE);
        assert_eq!(memo.full_judgings(), 4);
        // The dead agent heard from is found while the memo holds.
        let mut fleet = Fleet::default();
        fleet.upsert("a2", slot("a2", AgentState::Dead, 50_000, false));
        let mut heard = BTreeMap::new();
        let mut memo = SweepMemo::default();
        memo.due(
            &fleet,
            basis(1),
            &|id| heard.get(id).copied(),
            104_000,
            SILENCE,
        );
        heard.insert("a2".to_string(), 104_500);
        let due = memo.due(
            &fleet,
            basis(1),
            &|id| heard.get(id).copied(),
            105_000,
            SILENCE,
        );
        assert_eq!((due, memo.full_judgings()), (vec!["a2".to_string()], 1));
        // With no online agent the memo holds for MEMO_FOR at most.
        memo.due(&fleet, basis(1), &|_| None, 104_000 + MEMO_FOR, SILENCE);
        assert_eq!(memo.full_judgings(), 2);
        // A zero threshold moves an online agent at once, even within a grace that starts
        // after now: a sweep whose mark did not land finds it again.
        let at_once = Silence {
            unreachable_after: Duration::ZERO,
            dead_after: SILENCE.dead_after,
        };
        let mut fleet = Fleet::default();
        fleet.upsert("a1", slot("a1", AgentState::Online, 100_000, false));
        let ahead = MemoBasis {
            fleet: 1,
            records: vec![],
            grace_from: 200_000,
        };
        let mut memo = SweepMemo::default();
        for now in [104_000, 104_001] {
            assert_eq!(
                memo.due(&fleet, ahead.clone(), &|_| None, now, at_once),
                ["a1"]
            );
        }
    }
}
