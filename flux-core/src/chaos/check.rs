//! The invariant checker of a chaos run: [`Observations`] (the nodes' merged history and what
//! the cluster holds after healing) and the pure [`check`] that judges them.
//!
//! The checker is pure: it sees only [`Observations`], so every rule can be tested on made-up
//! histories, and `fluxctl chaos run` only gathers the observations and prints the verdict.
//! The rules are listed, in report order, by [`Invariant`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Invariant;
use crate::history::HistoryEvent;
use crate::model::{JobStatus, Millis};
use crate::reconcile::TargetState;
use crate::store::{Epoch, Version};

/// What became of one acknowledged job, seen after healing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct JobSeen {
    pub job_id: String,
    /// `None`: the store does not know the job.
    pub status: Option<JobStatus>,
    /// Attempts the store holds for the job.
    pub attempts: Vec<String>,
    /// Attempt ids that ran the command on an agent (the workload's side effect).
    pub executions: Vec<String>,
}

/// One desired-state target, seen after healing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TargetSeen {
    pub agent: String,
    pub status: TargetState,
    pub last_change: Option<Millis>,
    /// Whether the state's side effect (the agent's marker) exists.
    pub marked: bool,
}

/// A fault that took the leader away, and how long until another term's leader answered
/// (`None`: none did in time, or no leader could be found to hit).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FailoverSeen {
    pub fault: String,
    pub failover_ms: Option<u64>,
}

/// One run of a rollout target, as its side effect recorded it (agent clock, one host).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutRun {
    pub node_id: String,
    pub started_ns: u128,
    /// `None`: it never wrote its end (its agent was killed); it counts as running until the
    /// rollout recorded the target's end (as does any run of a target recorded failed).
    pub ended_ns: Option<u128>,
}

/// The repairs (applies) of the run's desired state, as their side effects recorded them, and
/// the bound its rollout table sets.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RepairsSeen {
    pub max_concurrency: usize,
    pub runs: Vec<RolloutRun>,
    /// Targets drifted at healing, each of which must have repaired after it (otherwise the
    /// bound was never put to the test).
    #[serde(default)]
    pub drifted: usize,
}

/// A rollout driven through the faults, seen after healing.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RolloutSeen {
    pub rollout_id: String,
    pub max_concurrency: usize,
    /// Its final status, `None` while unfinished.
    pub finished: Option<crate::rollout::RolloutStatus>,
    /// Each target and its recorded state, with when the rollout recorded its end (ms).
    pub targets: Vec<(String, crate::rollout::TargetState, Option<Millis>)>,
    pub runs: Vec<RolloutRun>,
}

/// The run's schedule (one job per slot, every `every_ms`), seen after healing.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ScheduleSeen {
    pub every_ms: Millis,
    /// The job group of every job the schedule started (`s.<slot>.<name>`).
    pub job_groups: Vec<String>,
    /// Slots the schedule's record counts as fired and as missed.
    pub fires: u64,
    pub missed: u64,
    /// The last slot the record decided.
    pub last_slot: Option<Millis>,
}

/// Everything the checker judges.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Observations {
    pub jobs: Vec<JobSeen>,
    pub history: Vec<HistoryEvent>,
    pub targets: Vec<TargetSeen>,
    /// Agents the desired state must cover.
    pub agents: Vec<String>,
    /// When the faults had stopped and every target was drifted on purpose.
    pub healed_at: Millis,
    pub failovers: Vec<FailoverSeen>,
    /// Rollouts the workload ran through the faults.
    #[serde(default)]
    pub rollouts: Vec<RolloutSeen>,
    /// The run's schedule, when it had one.
    #[serde(default)]
    pub schedule: Option<ScheduleSeen>,
    /// The desired state's repairs, when its state has a rollout table.
    #[serde(default)]
    pub repairs: Option<RepairsSeen>,
    /// The run's webhook and what its receiver recorded, when it had one.
    #[serde(default)]
    pub webhook: Option<super::webhook::WebhookSeen>,
    /// The run's rollout schedule (its `job_groups`: the group of each rollout it started).
    #[serde(default)]
    pub rollout_schedule: Option<ScheduleSeen>,
}

/// A broken invariant, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    pub invariant: Invariant,
    pub detail: String,
}

fn violation(invariant: Invariant, detail: String) -> Violation {
    Violation { invariant, detail }
}

/// Judges a run; an empty list means every invariant held.
pub fn check(obs: &Observations) -> Vec<Violation> {
    let mut out = Vec::new();
    check_jobs(obs, &mut out);
    check_results(obs, &mut out);
    check_leaders(obs, &mut out);
    check_states(obs, &mut out);
    check_collected(obs, &mut out);
    check_rollouts(obs, &mut out);
    check_repairs(obs, &mut out);
    if let Some(s) = &obs.rollout_schedule {
        check_schedule(s, &mut out);
    }
    if let Some(s) = &obs.schedule {
        check_schedule(s, &mut out);
    }
    for d in obs.webhook.iter().flat_map(super::webhook::check_webhook) {
        out.push(violation(Invariant::WebhookDeliveredAtLeastOnce, d));
    }
    for f in &obs.failovers {
        if f.failover_ms.is_none() {
            out.push(violation(
                Invariant::LeaderRecovered,
                format!("no leader of a newer term answered after {}", f.fault),
            ));
        }
    }
    out
}

fn check_jobs(obs: &Observations, out: &mut Vec<Violation>) {
    for j in &obs.jobs {
        let Some(status) = j.status else {
            out.push(violation(
                Invariant::AcknowledgedJobsKept,
                format!(
                    "job {} was acknowledged but the store does not know it",
                    j.job_id
                ),
            ));
            continue;
        };
        if status != JobStatus::Succeeded {
            out.push(violation(
                Invariant::JobsSucceeded,
                format!(
                    "job {} ended {:?} after healing, not succeeded",
                    j.job_id, status
                ),
            ));
        }
        let known: BTreeSet<&str> = j.attempts.iter().map(String::as_str).collect();
        for e in &j.executions {
            if !known.contains(e.as_str()) {
                out.push(violation(
                    Invariant::WorkAccountedFor,
                    format!(
                        "job {} ran under attempt {e}, which the store does not hold",
                        j.job_id
                    ),
                ));
            }
        }
        if status == JobStatus::Succeeded && j.executions.is_empty() {
            out.push(violation(
                Invariant::WorkAccountedFor,
                format!("job {} succeeded but never ran on an agent", j.job_id),
            ));
        }
    }
}

fn check_results(obs: &Observations, out: &mut Vec<Violation>) {
    let mut seen: BTreeMap<(&str, &str), Vec<&str>> = BTreeMap::new();
    for e in &obs.history {
        if let HistoryEvent::Result {
            node,
            tenant,
            attempt_id,
            ..
        } = e
        {
            seen.entry((tenant, attempt_id)).or_default().push(node);
        }
    }
    for ((tenant, attempt), nodes) in seen {
        if nodes.len() > 1 {
            out.push(violation(
                Invariant::ResultsRecordedOnce,
                format!(
                    "the result of attempt {tenant}/{attempt} was recorded {} times (by {})",
                    nodes.len(),
                    nodes.join(", ")
                ),
            ));
        }
    }
}

/// Every job the collector deleted was finished when it read it, and none was an acknowledged
/// job of the workload (which refers to its jobs until the end of the run).
fn check_rollouts(obs: &Observations, out: &mut Vec<Violation>) {
    use crate::rollout::TargetState;
    for r in &obs.rollouts {
        let v = |d: String| violation(Invariant::RolloutTargetsOnce, d);
        let mut runs: BTreeMap<&str, usize> = BTreeMap::new();
        for run in &r.runs {
            *runs.entry(run.node_id.as_str()).or_default() += 1;
        }
        for (node, n) in &runs {
            if *n > 1 {
                out.push(v(format!(
                    "rollout {}: target {node} ran {n} times",
                    r.rollout_id
                )));
            }
        }
        if r.finished.is_some() {
            for (node, state, _) in &r.targets {
                let ran = runs.contains_key(node.as_str());
                if *state == TargetState::Succeeded && !ran {
                    out.push(v(format!(
                        "rollout {}: target {node} succeeded but never ran",
                        r.rollout_id
                    )));
                }
                if !state.is_done() {
                    out.push(v(format!(
                        "rollout {} finished with target {node} still {}",
                        r.rollout_id,
                        state.as_str()
                    )));
                }
            }
        } else {
            out.push(v(format!(
                "rollout {} did not finish after healing",
                r.rollout_id
            )));
        }
        // Runs in progress at once: a run without its end lasts until the rollout recorded
        // the target's end (or for ever).
        // A failed target's run (its agent killed, say: its orphaned command may still write
        // its end) counts until the rollout recorded the failure, the moment the control
        // plane let its slot go.
        let recorded: BTreeMap<&str, (TargetState, Option<u128>)> = r
            .targets
            .iter()
            .map(|(n, s, e)| (n.as_str(), (*s, e.map(|ms| ms as u128 * 1_000_000))))
            .collect();
        let mut ev: Vec<(u128, i32)> = Vec::new();
        for run in &r.runs {
            let (state, rec_end) = recorded
                .get(run.node_id.as_str())
                .copied()
                .unwrap_or((TargetState::Running, None));
            let mut end = run.ended_ns.or(rec_end).unwrap_or(u128::MAX);
            if state == TargetState::Failed
                && let Some(e) = rec_end
            {
                end = end.min(e);
            }
            ev.push((run.started_ns, 1));
            ev.push((end, -1));
        }
        ev.sort();
        let (mut cur, mut max) = (0i32, 0i32);
        for (_, d) in ev {
            cur += d;
            max = max.max(cur);
        }
        if max as usize > r.max_concurrency {
            out.push(v(format!(
                "rollout {}: {max} targets ran at once, max_concurrency is {}",
                r.rollout_id, r.max_concurrency
            )));
        }
    }
}

/// The state's repairs that started after healing (when every target drifted at once, and no
/// fault kills an apply any more) never overlap more than `max_concurrency`. Repairs started
/// during the faults are not judged: an apply orphaned by a killed agent may still run after
/// the control plane let its slot go.
fn check_repairs(obs: &Observations, out: &mut Vec<Violation>) {
    let Some(r) = &obs.repairs else {
        return;
    };
    let healed_ns = obs.healed_at as u128 * 1_000_000;
    let mut ev: Vec<(u128, i32)> = Vec::new();
    for run in r.runs.iter().filter(|x| x.started_ns >= healed_ns) {
        ev.push((run.started_ns, 1));
        ev.push((run.ended_ns.unwrap_or(u128::MAX), -1));
    }
    ev.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in ev {
        cur += d;
        max = max.max(cur);
    }
    let after = r.runs.iter().filter(|x| x.started_ns >= healed_ns).count();
    if after < r.drifted {
        out.push(violation(
            Invariant::StateRepairsBounded,
            format!(
                "{after} repairs of the desired state after healing, for {} drifted targets: the bound was not exercised",
                r.drifted
            ),
        ));
    }
    if max as usize > r.max_concurrency {
        out.push(violation(
            Invariant::StateRepairsBounded,
            format!(
                "{max} repairs of the desired state ran at once after healing, its max_concurrency is {}",
                r.max_concurrency
            ),
        ));
    }
}

/// One job per fired slot, and no slot lost between the first fired and the last decided.
fn check_schedule(s: &ScheduleSeen, out: &mut Vec<Violation>) {
    let inv = Invariant::ScheduleFiredOncePerSlot;
    let mut per_slot: BTreeMap<Millis, usize> = BTreeMap::new();
    for g in &s.job_groups {
        if let Some((_, slot)) = crate::schedule::parse_slot_group(g) {
            *per_slot.entry(slot).or_default() += 1;
        }
    }
    for (slot, n) in &per_slot {
        if *n > 1 {
            out.push(violation(inv, format!("slot {slot} started {n} jobs")));
        }
    }
    if per_slot.len() as u64 != s.fires {
        out.push(violation(
            inv,
            format!(
                "the schedule's record counts {} fired slots but {} slots have jobs",
                s.fires,
                per_slot.len()
            ),
        ));
    }
    if let (Some(&first), Some(last)) = (per_slot.keys().next(), s.last_slot)
        && s.every_ms > 0
        && last >= first
    {
        let span = (last - first) / s.every_ms + 1;
        if span != per_slot.len() as u64 + s.missed {
            out.push(violation(
                inv,
                format!(
                    "{span} slots from {first} to {last}, but {} fired and {} counted missed",
                    per_slot.len(),
                    s.missed
                ),
            ));
        }
    }
}

fn check_collected(obs: &Observations, out: &mut Vec<Violation>) {
    let acknowledged: BTreeSet<&str> = obs.jobs.iter().map(|j| j.job_id.as_str()).collect();
    for e in &obs.history {
        if let HistoryEvent::Collected {
            node,
            tenant,
            job_id,
            status,
            ..
        } = e
        {
            if !status.is_terminal() {
                out.push(violation(
                    Invariant::NothingLiveCollected,
                    format!(
                        "{node} collected job {tenant}/{job_id} while it was {}",
                        status.as_str()
                    ),
                ));
            } else if acknowledged.contains(job_id.as_str()) {
                out.push(violation(
                    Invariant::NothingLiveCollected,
                    format!(
                        "{node} collected job {tenant}/{job_id}, which the workload still refers to"
                    ),
                ));
            }
        }
    }
}

fn check_leaders(obs: &Observations, out: &mut Vec<Violation>) {
    let mut writers: BTreeMap<Epoch, BTreeSet<&str>> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, Vec<(Version, Epoch, &str)>> = BTreeMap::new();
    for e in &obs.history {
        if let HistoryEvent::Write {
            node,
            epoch,
            tenant,
            revision,
            ..
        } = e
        {
            writers.entry(*epoch).or_default().insert(node);
            by_tenant
                .entry(tenant)
                .or_default()
                .push((*revision, *epoch, node));
        }
    }
    for (epoch, nodes) in writers {
        if nodes.len() > 1 {
            let names: Vec<&str> = nodes.into_iter().collect();
            out.push(violation(
                Invariant::OneLeaderPerEpoch,
                format!("epoch {epoch} was written by {}", names.join(" and ")),
            ));
        }
    }
    for (tenant, mut writes) in by_tenant {
        writes.sort();
        let mut newest: Option<(Epoch, &str, Version)> = None;
        let mut reported = 0;
        for (rev, epoch, node) in writes {
            match newest {
                Some((e, by, at)) if epoch < e => {
                    // One line per stale writer is enough to show it; the count says the rest.
                    reported += 1;
                    if reported <= 3 {
                        out.push(violation(
                            Invariant::OneLeaderPerEpoch,
                            format!(
                                "tenant {tenant}: {node} wrote revision {rev} under epoch {epoch} after {by} had written revision {at} under epoch {e}"
                            ),
                        ));
                    }
                }
                Some((e, _, _)) if epoch == e => {}
                _ => newest = Some((epoch, node, rev)),
            }
        }
        if reported > 3 {
            out.push(violation(
                Invariant::OneLeaderPerEpoch,
                format!(
                    "tenant {tenant}: {} more writes from superseded epochs",
                    reported - 3
                ),
            ));
        }
    }
}

fn check_states(obs: &Observations, out: &mut Vec<Violation>) {
    for agent in &obs.agents {
        match obs.targets.iter().find(|t| &t.agent == agent) {
            None => out.push(violation(
                Invariant::StatesConverged,
                format!("agent {agent} is not a target of the run's desired state"),
            )),
            Some(t) if t.status != TargetState::Compliant => out.push(violation(
                Invariant::StatesConverged,
                format!("target {agent} is {} after healing", t.status.as_str()),
            )),
            Some(t) if !t.marked || t.last_change.is_none_or(|at| at < obs.healed_at) => {
                out.push(violation(
                    Invariant::StatesConverged,
                    format!("target {agent} was not repaired after the drift made at healing"),
                ))
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::history::write;

    fn result(node: &str, attempt: &str) -> HistoryEvent {
        HistoryEvent::Result {
            node: node.into(),
            tenant: "default".into(),
            attempt_id: attempt.into(),
            at: 0,
        }
    }

    #[test]
    fn a_rollout_target_run_twice_or_above_the_concurrency_is_a_violation() {
        use crate::rollout::{RolloutStatus, TargetState};
        let run = |n: &str, s: u128, e: Option<u128>| RolloutRun {
            node_id: n.into(),
            started_ns: s,
            ended_ns: e,
        };
        let mut r = RolloutSeen {
            rollout_id: "r1".into(),
            max_concurrency: 1,
            finished: Some(RolloutStatus::Succeeded),
            targets: vec![
                ("a".into(), TargetState::Succeeded, Some(2)),
                ("b".into(), TargetState::Succeeded, Some(4)),
            ],
            runs: vec![run("a", 0, Some(10)), run("b", 20, Some(30))],
        };
        let judge = |r: &RolloutSeen| {
            check(&Observations {
                rollouts: vec![r.clone()],
                ..Observations::default()
            })
        };
        assert!(judge(&r).is_empty(), "{:?}", judge(&r));
        // Overlapping runs with a concurrency of 1.
        r.runs[1].started_ns = 5;
        assert_eq!(judge(&r).len(), 1);
        // A run without its end lasts until its recorded end (2 ms here).
        r.runs[1].started_ns = 3_000_000;
        r.runs[0].ended_ns = None;
        assert!(judge(&r).is_empty(), "{:?}", judge(&r));
        // A target run twice, a succeeded target that never ran, an unfinished rollout.
        r.runs.push(run("a", 3_000_000, Some(3_000_001)));
        assert!(judge(&r).iter().any(|v| v.detail.contains("ran 2 times")));
        r.runs.retain(|x| x.node_id != "b");
        assert!(judge(&r).iter().any(|v| v.detail.contains("never ran")));
        r.finished = None;
        assert!(
            judge(&r)
                .iter()
                .any(|v| v.detail.contains("did not finish"))
        );
    }

    fn good_job(id: &str) -> JobSeen {
        JobSeen {
            job_id: id.into(),
            status: Some(JobStatus::Succeeded),
            attempts: vec![format!("{id}.1"), format!("{id}.2")],
            executions: vec![format!("{id}.2")],
        }
    }

    fn clean() -> Observations {
        Observations {
            jobs: vec![good_job("j1"), good_job("j2")],
            history: vec![
                write("a", 1, 5),
                write("a", 1, 9),
                result("b", "j1.2"),
                write("b", 2, 10),
                write("a", 3, 12),
                result("a", "j2.2"),
            ],
            targets: vec![TargetSeen {
                agent: "x".into(),
                status: TargetState::Compliant,
                last_change: Some(200),
                marked: true,
            }],
            agents: vec!["x".into()],
            healed_at: 100,
            failovers: vec![FailoverSeen {
                fault: "leader-kill at 3000 ms".into(),
                failover_ms: Some(900),
            }],
            rollouts: Vec::new(),
            schedule: Some(ScheduleSeen {
                every_ms: 1000,
                job_groups: vec![
                    "s.1000.tick".into(),
                    "s.2000.tick".into(),
                    "s.4000.tick".into(),
                ],
                fires: 3,
                missed: 1,
                last_slot: Some(4000),
            }),
            repairs: None,
            webhook: Some(super::super::webhook::WebhookSeen {
                expected: vec![("5.0".into(), "j1".into())],
                received: vec![super::super::webhook::Receipt {
                    delivery_id: "h-5.0".into(),
                    event_id: "5.0".into(),
                    object: "j1".into(),
                    signed: true,
                }],
            }),
            rollout_schedule: Some(ScheduleSeen {
                every_ms: 2000,
                job_groups: vec!["s.2000.roll".into(), "s.4000.roll".into()],
                fires: 2,
                missed: 0,
                last_slot: Some(4000),
            }),
        }
    }

    #[test]
    fn state_repairs_above_the_concurrency_after_healing_are_a_violation() {
        let ms = 1_000_000u128;
        let run = |node: &str, s: u128, e: Option<u128>| RolloutRun {
            node_id: node.into(),
            started_ns: s * ms,
            ended_ns: e.map(|e| e * ms),
        };
        let mut obs = clean();
        // Before healing (100 ms) three ran together: not judged. After: two at once, at most.
        obs.repairs = Some(RepairsSeen {
            max_concurrency: 2,
            drifted: 3,
            runs: vec![
                run("a", 10, Some(50)),
                run("b", 10, Some(50)),
                run("c", 10, None),
                run("a", 200, Some(300)),
                run("b", 250, Some(350)),
                run("c", 300, Some(400)),
            ],
        });
        assert!(check(&obs).is_empty(), "{:?}", check(&obs));
        // A third repair while two still run.
        obs.repairs
            .as_mut()
            .unwrap()
            .runs
            .push(run("d", 260, Some(270)));
        let v = check(&obs);
        assert_eq!(invariants(&v), vec!["state_repairs_bounded"], "{v:?}");
        assert!(v[0].detail.contains("3 repairs"), "{v:?}");
        // One that never ended after healing holds its slot for ever.
        let mut obs = clean();
        obs.repairs = Some(RepairsSeen {
            max_concurrency: 1,
            drifted: 2,
            runs: vec![run("a", 200, None), run("b", 900, Some(950))],
        });
        assert_eq!(invariants(&check(&obs)), vec!["state_repairs_bounded"]);
        // Fewer repairs after healing than targets drifted: nothing was judged, a violation.
        let mut obs = clean();
        obs.repairs = Some(RepairsSeen {
            max_concurrency: 2,
            drifted: 3,
            runs: vec![run("a", 10, Some(50)), run("a", 200, Some(300))],
        });
        let v = check(&obs);
        assert_eq!(invariants(&v), vec!["state_repairs_bounded"], "{v:?}");
        assert!(v[0].detail.contains("not exercised"), "{v:?}");
    }

    #[test]
    fn a_slot_fired_twice_or_lost_breaks_the_schedule_invariant() {
        let inv = ["schedule_fired_once_per_slot"];
        let mut o = clean();
        let s = o.schedule.as_mut().unwrap();
        s.job_groups.push("s.2000.tick".into());
        assert_eq!(invariants(&check(&o)), inv, "a double run");
        let mut o = clean();
        o.schedule.as_mut().unwrap().missed = 0;
        assert_eq!(
            invariants(&check(&o)),
            inv,
            "slot 3000 neither ran nor was missed"
        );
        let mut o = clean();
        let s = o.schedule.as_mut().unwrap();
        s.job_groups.remove(0);
        assert_eq!(invariants(&check(&o)), inv, "a fired slot without its job");
        // Triggered runs and other groups are not slots.
        let mut o = clean();
        o.schedule
            .as_mut()
            .unwrap()
            .job_groups
            .push("t.abc.tick".into());
        assert_eq!(check(&o), vec![]);
        // A rollout schedule's slots are judged from the groups of its rollouts.
        let mut o = clean();
        let s = o.rollout_schedule.as_mut().unwrap();
        s.job_groups.push("s.4000.roll".into());
        assert_eq!(
            invariants(&check(&o)),
            inv,
            "a slot's rollout started twice"
        );
        let mut o = clean();
        o.rollout_schedule.as_mut().unwrap().job_groups.remove(0);
        assert_eq!(
            invariants(&check(&o)),
            inv,
            "a fired slot without its rollout"
        );
    }

    #[test]
    fn an_event_the_receiver_never_got_breaks_the_webhook_invariant() {
        let mut o = clean();
        o.webhook.as_mut().unwrap().received.clear();
        assert_eq!(invariants(&check(&o)), ["webhook_delivered_at_least_once"]);
    }

    fn invariants(v: &[Violation]) -> Vec<&'static str> {
        v.iter().map(|v| v.invariant.as_str()).collect()
    }

    #[test]
    fn a_clean_run_passes() {
        assert_eq!(check(&clean()), vec![]);
    }

    #[test]
    fn lost_failed_and_unaccounted_jobs_are_caught() {
        let mut o = clean();
        o.jobs.push(JobSeen {
            job_id: "gone".into(),
            ..JobSeen::default()
        });
        o.jobs.push(JobSeen {
            status: Some(JobStatus::Running),
            ..good_job("stuck")
        });
        o.jobs.push(JobSeen {
            executions: vec!["ghost.7".into()],
            ..good_job("ghost")
        });
        o.jobs.push(JobSeen {
            executions: vec![],
            ..good_job("never")
        });
        assert_eq!(
            invariants(&check(&o)),
            vec![
                "acknowledged_jobs_kept",
                "jobs_succeeded",
                "work_accounted_for",
                "work_accounted_for"
            ]
        );
    }

    #[test]
    fn a_result_recorded_twice_is_caught_even_by_two_nodes() {
        let mut o = clean();
        o.history.push(result("c", "j1.2"));
        let v = check(&o);
        assert_eq!(invariants(&v), vec!["results_recorded_once"]);
        assert!(v[0].detail.contains("b, c"), "{v:?}");
    }

    fn collected(job: &str, status: JobStatus) -> HistoryEvent {
        HistoryEvent::Collected {
            node: "b".into(),
            tenant: "default".into(),
            job_id: job.into(),
            status,
            at: 0,
        }
    }

    #[test]
    fn collecting_an_unfinished_or_referenced_job_is_caught() {
        let mut o = clean();
        o.history
            .push(collected("someone-elses", JobStatus::Succeeded));
        assert_eq!(check(&o), vec![]);
        o.history.push(collected("j9", JobStatus::Running));
        o.history.push(collected("j1", JobStatus::Succeeded));
        let v = check(&o);
        assert_eq!(
            invariants(&v),
            vec!["nothing_live_collected", "nothing_live_collected"]
        );
        assert!(v[0].detail.contains("while it was running"), "{v:?}");
        assert!(v[1].detail.contains("still refers to"), "{v:?}");
    }

    #[test]
    fn two_writers_in_one_epoch_are_caught() {
        let mut o = clean();
        o.history.push(write("b", 3, 13));
        let v = check(&o);
        assert_eq!(invariants(&v), vec!["one_leader_per_epoch"]);
        assert!(v[0].detail.contains("epoch 3"), "{v:?}");
    }

    #[test]
    fn a_superseded_leader_writing_late_is_caught_in_commit_order() {
        // The stale write is logged last here but what matters is the revision order: epoch 1
        // committing revision 11, after epoch 2 committed revision 10.
        let mut o = clean();
        o.history.push(write("a", 1, 11));
        let v = check(&o);
        assert_eq!(invariants(&v), vec!["one_leader_per_epoch"]);
        assert!(v[0].detail.contains("revision 11 under epoch 1"), "{v:?}");
        // The same write in another tenant's revision space is not comparable: no violation.
        let mut o = clean();
        o.history.push(HistoryEvent::Write {
            node: "a".into(),
            epoch: 1,
            tenant: "other".into(),
            revision: 11,
            at: 0,
        });
        assert_eq!(check(&o), vec![]);
    }

    #[test]
    fn many_stale_writes_are_summarised() {
        let mut o = clean();
        for rev in 20..30 {
            o.history.push(write("a", 1, rev));
        }
        let v = check(&o);
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[3].detail.contains("7 more"), "{v:?}");
    }

    #[test]
    fn unconverged_or_unrepaired_targets_are_caught() {
        let mut o = clean();
        o.agents.push("y".into());
        o.agents.push("z".into());
        o.targets.push(TargetSeen {
            agent: "y".into(),
            status: TargetState::Failed,
            last_change: Some(300),
            marked: true,
        });
        o.targets.push(TargetSeen {
            agent: "z".into(),
            status: TargetState::Compliant,
            last_change: Some(50),
            marked: true,
        });
        // Compliant after healing by the server's account, but the marker is missing: the
        // check that said so ran before the drift.
        o.agents.push("v".into());
        o.targets.push(TargetSeen {
            agent: "v".into(),
            status: TargetState::Compliant,
            last_change: Some(300),
            marked: false,
        });
        o.agents.push("w".into());
        let v = check(&o);
        assert_eq!(invariants(&v), vec!["states_converged"; 4]);
    }

    #[test]
    fn a_leader_fault_without_a_new_leader_is_caught() {
        let mut o = clean();
        o.failovers.push(FailoverSeen {
            fault: "leader-pause at 9000 ms".into(),
            failover_ms: None,
        });
        let v = check(&o);
        assert_eq!(invariants(&v), vec!["leader_recovered"]);
        assert!(v[0].detail.contains("leader-pause at 9000 ms"), "{v:?}");
    }

    #[test]
    fn fenced_refusals_are_not_writes() {
        // A superseded leader whose write was refused wrote nothing: no violation.
        let mut o = clean();
        o.history.push(HistoryEvent::Fenced {
            node: "a".into(),
            epoch: 1,
            tenant: "default".into(),
            at: 0,
        });
        assert_eq!(check(&o), vec![]);
    }
}
