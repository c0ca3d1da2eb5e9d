//! Chaos runs (feature `chaos`): the seeded fault schedule, the history that `fluxd` nodes
//! record for a run, and the invariant checker that judges a run from that history and from
//! what the cluster holds after healing.
//!
//! The checker is pure: it sees only [`Observations`], so every rule can be tested on made-up
//! histories, and `fluxctl chaos run` only gathers the observations and prints the verdict.
//!
//! - [`schedule`](mod@schedule): the seeded fault schedule;
//! - [`check`](mod@check): the observations and the pure checker;
//! - [`faultproxy`]: the TCP proxy that cuts or freezes a node's traffic to Redis;
//! - the history lines themselves live in [`crate::history`], always compiled, because `fluxd`
//!   writes them.
//!
//! Invariants:
//! - no acknowledged job is lost: every job the API acknowledged exists after healing, finished,
//!   and succeeded (the workload's commands cannot fail on their own);
//! - work is accounted for: every execution seen on an agent belongs to an attempt the store
//!   knows, and a succeeded job was executed at least once;
//! - no attempt result is recorded twice (as the nodes saw it: a result counts when the call
//!   that reported it changed the attempt);
//! - never two leaders: each epoch's fenced writes come from one node, and in the commit order
//!   of a tenant's fenced writes no write of an older epoch lands after one of a newer epoch;
//! - every desired state converges after healing: each target is compliant again, and its
//!   marker (the state's side effect) was re-created after the drift made when the faults
//!   stopped;
//! - a leader comes back after every fault that took the leader away;
//! - garbage collection never deletes a live or referenced job: every job it deleted was
//!   finished when read, and none was one the workload had been acknowledged and still checks;
//! - a rollout driven through the faults starts no target twice, loses none once it finished
//!   (every target has a recorded outcome, and a succeeded one ran), and never runs more than
//!   its `max_concurrency` at once, measured from the targets' own side effects;
//! - after healing, when every target of the desired state drifted at once, never more of its
//!   repairs run at once than its rollout table's `max_concurrency`, measured from the
//!   applies' own side effects.
//! - every event the run's webhook takes reached its receiver at least once, first deliveries
//!   in log order per object, each event under one delivery id ([`webhook`]).

use serde::{Deserialize, Serialize};

use crate::named::named_enum;

pub mod check;
pub mod faultproxy;
pub mod schedule;
pub mod webhook;

pub use crate::history::{HistoryEvent, parse_history};
pub use check::{
    FailoverSeen, JobSeen, Observations, RepairsSeen, RolloutRun, RolloutSeen, ScheduleSeen,
    TargetSeen, Violation, check,
};
pub use schedule::{WARMUP_MS, schedule};
pub use webhook::{Receipt, WebhookSeen};

named_enum! {
    /// A kind of fault a chaos run injects.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "kebab-case")]
    #[strum(serialize_all = "kebab-case")]
    pub enum Scenario {
        /// `kill -9` of the leading `fluxd`, restarted after the hold.
        LeaderKill,
        /// SIGSTOP of the leading `fluxd` for the hold, then SIGCONT.
        LeaderPause,
        /// `kill -9` of an agent (with the jobs it runs), restarted after the hold.
        AgentKill,
        /// `kill -9` of `redis-server`, restarted on the same port and files after the hold.
        RedisRestart,
        /// The leading `fluxd` cut off from Redis (connections dropped, new ones closed) for the
        /// hold.
        Partition,
        /// The leading `fluxd`'s traffic to and from Redis held for the hold, then delivered:
        /// what it sent meanwhile (lease renewals, writes) reaches Redis late, when a successor
        /// may lead.
        NetworkFreeze,
    }
}

impl Scenario {
    /// Whether the fault takes the leader away (a failover time is measured).
    pub fn hits_leader(self) -> bool {
        matches!(
            self,
            Scenario::LeaderKill
                | Scenario::LeaderPause
                | Scenario::Partition
                | Scenario::NetworkFreeze
        )
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Scenario, String> {
        Scenario::parse(s)
            .ok_or_else(|| format!("unknown scenario {s:?} (one of {}, all)", Scenario::names()))
    }
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Offset from the start of the workload, in milliseconds.
    pub at_ms: u64,
    pub scenario: Scenario,
    /// Which agent an `agent-kill` hits (index, modulo the number of agents); unused otherwise
    /// (leader faults hit whichever node leads at that moment).
    pub target: u32,
    /// How long the fault lasts before it is healed, in milliseconds.
    pub hold_ms: u64,
}

named_enum! {
    /// An invariant a chaos run must hold, in report order ([`Invariant::ALL`]). Its name
    /// ([`Invariant::as_str`], also its JSON form) is what reports and violations show.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[strum(serialize_all = "snake_case")]
    pub enum Invariant {
        /// Every job the API acknowledged exists after healing.
        AcknowledgedJobsKept,
        /// Every acknowledged job finished and succeeded.
        JobsSucceeded,
        /// Every execution seen on an agent belongs to an attempt the store knows, and a succeeded
        /// job ran at least once.
        WorkAccountedFor,
        /// No attempt result is recorded twice.
        ResultsRecordedOnce,
        /// Each epoch's fenced writes come from one node, and no older epoch writes after a newer.
        OneLeaderPerEpoch,
        /// Every desired-state target is compliant again and was repaired after healing.
        StatesConverged,
        /// A leader came back after every fault that took the leader away.
        LeaderRecovered,
        /// Garbage collection deleted only finished jobs nobody still refers to.
        NothingLiveCollected,
        /// No rollout target ran twice, none of a finished rollout was lost, and never more than
        /// `max_concurrency` ran at once (from the targets' own side effects).
        RolloutTargetsOnce,
        /// The run's schedule started exactly one job per slot it fired, and every slot from its
        /// first to its last either fired or was counted missed.
        ScheduleFiredOncePerSlot,
        /// After healing, when every target of the run's desired state drifted at once, never
        /// more of its repairs ran at once than its rollout's `max_concurrency` (from the applies'
        /// own side effects).
        StateRepairsBounded,
        /// Every event the run's webhook takes reached the receiver at least once, in log order
        /// per object, under one delivery id each, signed.
        WebhookDeliveredAtLeastOnce,
    }
}

/// Failover time statistics, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub count: usize,
    pub min_ms: u64,
    pub p50_ms: u64,
    pub max_ms: u64,
}

impl Spread {
    pub fn of(samples: &[u64]) -> Spread {
        let mut v = samples.to_vec();
        v.sort_unstable();
        if v.is_empty() {
            return Spread::default();
        }
        Spread {
            count: v.len(),
            min_ms: v[0],
            p50_ms: v[(v.len() - 1) / 2],
            max_ms: v[v.len() - 1],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_names_round_trip() {
        for s in Scenario::ALL {
            assert_eq!(s.as_str().parse::<Scenario>(), Ok(s));
        }
        assert!(
            "leader-nap"
                .parse::<Scenario>()
                .unwrap_err()
                .contains("one of")
        );
    }

    #[test]
    fn an_unknown_scenario_lists_every_name_and_all() {
        assert_eq!(
            "leader-nap".parse::<Scenario>(),
            Err(
                "unknown scenario \"leader-nap\" (one of leader-kill, leader-pause, agent-kill, \
                 redis-restart, partition, network-freeze, all)"
                    .to_string()
            )
        );
    }

    #[test]
    fn spread_takes_the_lower_median() {
        assert_eq!(
            Spread::of(&[30, 10, 20, 40]),
            Spread {
                count: 4,
                min_ms: 10,
                p50_ms: 20,
                max_ms: 40
            }
        );
        assert_eq!(Spread::of(&[]), Spread::default());
    }

    #[test]
    fn invariant_names_are_their_json_form() {
        for i in Invariant::ALL {
            assert_eq!(serde_json::to_value(i).unwrap(), i.as_str());
        }
    }
}
