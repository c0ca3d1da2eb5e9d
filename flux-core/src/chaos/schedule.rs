//! The seeded fault schedule of a chaos run: which fault happens when, for how long, and what
//! it hits, as a pure function of the seed, the scenarios and the duration (so `fluxctl chaos
//! plan` shows exactly what `fluxctl chaos run` with the same seed will do).

use std::collections::BTreeSet;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::{Fault, Scenario};

/// Time before the first fault, so the workload and the states are under way.
pub const WARMUP_MS: u64 = 3_000;

/// How long a fault of `scenario` lasts, in milliseconds (low, high).
fn hold_range(scenario: Scenario) -> (u64, u64) {
    match scenario {
        Scenario::LeaderKill => (1_000, 3_000),
        // Longer than the lease, so a successor takes over while the leader is frozen.
        Scenario::LeaderPause => (2_500, 4_000),
        Scenario::AgentKill => (500, 3_000),
        Scenario::RedisRestart => (300, 2_000),
        Scenario::Partition | Scenario::NetworkFreeze => (2_000, 4_000),
    }
}

/// The fault schedule of a run: a deterministic function of the seed, the scenarios and the
/// duration. Faults do not overlap: each is healed, then a pause of 1–3 s follows. Scenarios
/// are taken in rounds, each round a seeded shuffle of all of them, so every scenario is
/// exercised once the run is long enough for a round.
pub fn schedule(seed: u64, scenarios: &[Scenario], duration_ms: u64) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pool: Vec<Scenario> = scenarios
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut out = Vec::new();
    if pool.is_empty() {
        return out;
    }
    let mut round: Vec<Scenario> = Vec::new();
    let mut at = WARMUP_MS;
    loop {
        if round.is_empty() {
            pool.shuffle(&mut rng);
            round = pool.clone();
            round.reverse();
        }
        let scenario = round.pop().expect("round refilled");
        let (lo, hi) = hold_range(scenario);
        let hold_ms = rng.random_range(lo..=hi) / 100 * 100;
        if at + hold_ms > duration_ms {
            break;
        }
        out.push(Fault {
            at_ms: at,
            scenario,
            target: rng.random_range(0..1024),
            hold_ms,
        });
        at += hold_ms + rng.random_range(1_000..=3_000) / 100 * 100;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_a_function_of_the_seed() {
        let all = Scenario::ALL;
        let a = schedule(42, &all, 60_000);
        assert_eq!(a, schedule(42, &all, 60_000));
        assert_ne!(a, schedule(43, &all, 60_000));
        // Faults stay inside the run, do not overlap, and every scenario gets its turn.
        assert!(a.first().is_some_and(|f| f.at_ms == WARMUP_MS));
        for w in a.windows(2) {
            assert!(w[0].at_ms + w[0].hold_ms + 1_000 <= w[1].at_ms, "{w:?}");
        }
        assert!(a.iter().all(|f| f.at_ms + f.hold_ms <= 60_000));
        let kinds: BTreeSet<Scenario> = a.iter().map(|f| f.scenario).collect();
        assert_eq!(kinds.len(), all.len(), "{a:?}");
        // One scenario only: every fault is of that kind.
        let one = schedule(1, &[Scenario::AgentKill], 30_000);
        assert!(!one.is_empty() && one.iter().all(|f| f.scenario == Scenario::AgentKill));
        assert_eq!(schedule(1, &[], 30_000), vec![]);
        assert_eq!(schedule(1, &all, 1_000), vec![]);
    }
}
