//! The leader's liveness sweep judged on its in-memory view of the fleet
//! (`Jobs::sweep_tenant_in`, what the leader runs) against the sweep that reads every agent
//! record (`Jobs::sweep_tenant`): the same scenario on two stores gives the same reports, the
//! same agent states and the same requeues at every step, whether the view is read afresh for
//! every sweep or kept from one sweep to the next, with its memo of which agents can be due,
//! as the leader keeps it.

use flux_core::jobs::index::Indexes;

use super::*;

/// What one sweep did, and what the store holds after it.
#[derive(Debug, PartialEq)]
struct Step {
    report: SweepReport,
    states: Vec<(String, AgentState)>,
    job: (JobStatus, Option<String>),
}

/// How a sweep sees the fleet.
enum View {
    /// It reads every agent record.
    Read,
    /// A detached view, read afresh from the store for each sweep, as the leader's is after a
    /// resync.
    Fresh,
    /// One view for the whole scenario, fed by the store's change notices.
    Kept(Indexes),
}

async fn sweep(e: &Env, view: &mut View, epoch: Epoch, now: Millis, grace_from: Millis) -> Step {
    let mut detached = Indexes::detached();
    let indexes = match view {
        View::Read => None,
        View::Fresh => Some(&mut detached),
        View::Kept(kept) => Some(kept),
    };
    let report = match indexes {
        Some(indexes) => {
            let ix = e.jobs.fresh_index(indexes, TENANT).await.unwrap();
            e.jobs
                .sweep_tenant_in(TENANT, epoch, now, grace_from, ix)
                .await
                .unwrap()
        }
        None => e
            .jobs
            .sweep_tenant(TENANT, epoch, now, grace_from)
            .await
            .unwrap(),
    };
    let mut states = Vec::new();
    for n in ["node-a", "node-b", "node-c"] {
        states.push((n.to_string(), e.jobs.agent(TENANT, n).await.unwrap().state));
    }
    let jobs = e.jobs.list(TENANT, &JobFilter::default()).await.unwrap();
    let j = &jobs[0];
    Step {
        report,
        states,
        job: (j.status, j.agent.clone()),
    }
}

/// node-a runs a job and goes silent; node-b is heard by another node that publishes late, so
/// it is marked unreachable and then brought back by a sweep; node-c goes silent, is marked
/// dead, and comes back by its own heartbeat. Returns every sweep's step.
async fn scenario(kept: bool, fresh: bool) -> (Vec<Step>, Option<u64>) {
    let e = env().await;
    let mut view = match (kept, fresh) {
        (true, _) => View::Kept(e.jobs.scheduler_indexes()),
        (false, true) => View::Fresh,
        (false, false) => View::Read,
    };
    let c = cfg();
    let epoch = e.store.next_epoch().await.unwrap();
    let other = Jobs::new(e.store.clone(), cfg());
    register(&e.jobs, TENANT, "node-a", T0).await;
    let _ = submit_and_start(&e, epoch, shell("sleep 100"), "node-a", T0, T0 + 10).await;
    register(&e.jobs, TENANT, "node-b", T0).await;
    register(&e.jobs, TENANT, "node-c", T0).await;
    let unreachable = T0 + ms(c.unreachable_after);
    let dead = T0 + ms(c.dead_after);
    let mut steps = Vec::new();
    steps.push(sweep(&e, &mut view, epoch, unreachable - 1, 0).await);
    // Nothing changed: a kept view's memo serves this one.
    steps.push(sweep(&e, &mut view, epoch, unreachable - 1, 0).await);
    heartbeat(&other, TENANT, "node-b", &[], T0 + 5000).await;
    steps.push(sweep(&e, &mut view, epoch, unreachable, 0).await);
    other
        .publish_liveness("fluxd-2", unreachable + 100)
        .await
        .unwrap();
    steps.push(sweep(&e, &mut view, epoch, unreachable + 200, 0).await);
    // A leader elected just now grants every agent a fresh grace.
    steps.push(sweep(&e, &mut view, epoch, dead, dead - 1).await);
    steps.push(sweep(&e, &mut view, epoch, dead, 0).await);
    // Every agent is dead: the memo's watch list is the whole fleet.
    steps.push(sweep(&e, &mut view, epoch, dead + 500, 0).await);
    steps.push(sweep(&e, &mut view, epoch, dead + 600, 0).await);
    // node-c is heard from again: its heartbeat writes it back online.
    heartbeat(&e.jobs, TENANT, "node-c", &[], dead + 1000).await;
    steps.push(sweep(&e, &mut view, epoch, dead + 1100, 0).await);
    let full = match &mut view {
        View::Kept(indexes) => indexes
            .get_mut(TENANT)
            .map(|ix| ix.sweep_view().2.full_judgings()),
        _ => None,
    };
    (steps, full)
}

#[tokio::test]
async fn the_sweep_on_the_fleet_view_decides_as_the_sweep_that_reads_every_agent() {
    let (read, _) = scenario(false, false).await;
    let (viewed, _) = scenario(false, true).await;
    assert_eq!(viewed, read);
    let (kept, full) = scenario(true, false).await;
    assert_eq!(kept, read);
    // The kept view's memo spared some of its sweeps a full judging.
    let full = full.expect("the kept view holds the tenant");
    assert!(full + 2 <= kept.len() as u64, "{full} full judgings");
    // And the scenario is not vacuous: it marks unreachable, dead and requeues.
    let total = |f: fn(&SweepReport) -> usize| read.iter().map(|s| f(&s.report)).sum::<usize>();
    assert!(total(|r| r.marked_unreachable) >= 2, "{read:#?}");
    assert!(total(|r| r.marked_dead) >= 2, "{read:#?}");
    assert_eq!(total(|r| r.requeued), 1, "{read:#?}");
    assert!(total(|r| r.marked_online) >= 1, "{read:#?}");
    let last = read.last().unwrap();
    assert!(
        last.states
            .iter()
            .any(|(n, s)| n == "node-c" && *s == AgentState::Online),
        "{read:#?}"
    );
}
