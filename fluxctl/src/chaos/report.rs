//! What `fluxctl chaos run` reports: the faults as they were carried out, the workload, the
//! history's statistics and each invariant's verdict. `-o json` prints a [`Report`] whole; the
//! table form is printed by `fluxctl`'s main.

use std::collections::BTreeSet;
use std::path::PathBuf;

use flux_core::chaos::{Fault, HistoryEvent, Invariant, Scenario, Spread, Violation};
use serde::Serialize;

use super::Unsafety;

/// One fault as it was carried out.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRun {
    #[serde(flatten)]
    pub planned: Fault,
    /// When it was injected, from the start of the workload.
    pub started_ms: u64,
    /// What it hit (node or agent id, `redis`).
    pub hit: String,
    /// Leader faults: time from the fault until another term's leader answered.
    pub failover_ms: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Workload {
    pub submitted: usize,
    pub acknowledged: usize,
    /// Submissions that never got an answer (they may or may not exist; not judged).
    pub unacknowledged: usize,
    pub succeeded: usize,
    pub executions: usize,
    pub state_targets: usize,
    /// Events the run's webhook takes, and requests its receiver got (re-deliveries included).
    pub webhook_events: usize,
    pub webhook_deliveries: usize,
    /// Rollouts the rollout schedule started (one per fired slot).
    pub schedule_rollouts: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct HistoryStats {
    pub leader_writes: usize,
    /// Leader writes refused because a newer epoch existed (fencing at work).
    pub fenced: usize,
    pub results: usize,
    /// Jobs deleted by garbage collection.
    pub collected: usize,
    /// Distinct epochs that wrote.
    pub epochs: usize,
    /// Lines that did not parse (a node killed in the middle of a line).
    pub torn_lines: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct InvariantResult {
    pub invariant: Invariant,
    pub held: bool,
    pub violations: usize,
}

/// The report of a run (`-o json` prints it whole).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub scenarios: Vec<Scenario>,
    pub duration_secs: f64,
    pub nodes: usize,
    pub agents: usize,
    pub unsafety: Unsafety,
    pub faults: Vec<FaultRun>,
    pub failover: Spread,
    pub workload: Workload,
    pub history: HistoryStats,
    pub invariants: Vec<InvariantResult>,
    /// The first violations found (at most 50).
    pub violations: Vec<Violation>,
    pub passed: bool,
    /// Where the logs and histories are, when kept.
    pub work_dir: Option<PathBuf>,
}

impl HistoryStats {
    /// Counts the merged history of a run, with the `torn` lines that did not parse.
    pub(super) fn of(history: &[HistoryEvent], torn: usize) -> HistoryStats {
        let count = |f: fn(&HistoryEvent) -> bool| history.iter().filter(|e| f(e)).count();
        let epochs: BTreeSet<u64> = history
            .iter()
            .filter_map(|e| match e {
                HistoryEvent::Write { epoch, .. } => Some(*epoch),
                _ => None,
            })
            .collect();
        HistoryStats {
            leader_writes: count(|e| matches!(e, HistoryEvent::Write { .. })),
            fenced: count(|e| matches!(e, HistoryEvent::Fenced { .. })),
            results: count(|e| matches!(e, HistoryEvent::Result { .. })),
            collected: count(|e| matches!(e, HistoryEvent::Collected { .. })),
            epochs: epochs.len(),
            torn_lines: torn,
        }
    }
}

impl InvariantResult {
    /// Every invariant, in report order, with how many of `violations` broke it.
    pub(super) fn all(violations: &[Violation]) -> Vec<InvariantResult> {
        Invariant::ALL
            .into_iter()
            .map(|invariant| {
                let n = violations
                    .iter()
                    .filter(|v| v.invariant == invariant)
                    .count();
                InvariantResult {
                    invariant,
                    held: n == 0,
                    violations: n,
                }
            })
            .collect()
    }
}
