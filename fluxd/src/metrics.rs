//! Prometheus metrics of one fluxd node, served on `/metrics`: the registry only. It imports
//! nothing from the crate; the HTTP layer that counts requests is `middleware::metrics`.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// All metrics of the node.
pub struct Metrics {
    registry: Registry,
    pub leader_status: IntGauge,
    pub leader_epoch: IntGauge,
    pub connected_agents: IntGauge,
    pub agents_by_state: IntGaugeVec,
    pub queue_depth: IntGauge,
    pub jobs_submitted: IntCounter,
    pub results_recorded: IntCounter,
    pub task_polls_unread: IntCounter,
    pub requeued: IntCounter,
    pub fenced: IntCounter,
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    pub reconcile_checks: IntCounter,
    pub reconcile_drift: IntCounter,
    pub reconcile_repairs: IntCounter,
    pub reconcile_failures: IntCounter,
    pub reconcile_deferred: IntCounter,
    pub reconcile_held: IntCounter,
    pub state_targets: IntGaugeVec,
    pub backups: IntCounterVec,
    pub backup_last_success: IntGauge,
    pub store_ops: HistogramVec,
    pub jobs_finished: IntCounterVec,
    pub dispatch_latency: prometheus::Histogram,
    pub integrity_mismatch: IntCounter,
    pub integrity_checks: IntCounter,
    pub audit_pruned: IntCounter,
    pub audit_failures: IntCounter,
    pub store_writable: IntGauge,
    pub disk_refusals: IntCounter,
    pub gc_deleted: IntCounterVec,
    pub gc_conflicts: IntCounter,
    pub gc_backlog_refusals: IntCounter,
    /// The longest any tenant's collector has been behind, in seconds.
    pub gc_lag: IntGauge,
    pub store_objects: IntGaugeVec,
    /// Enrollments by result (`ok`, `used_up`, `refused`) and credential renewals.
    pub enrollments: IntCounterVec,
    pub renewals: IntCounter,
    /// Rollouts finished on this node as leader, by final status; targets ended, by outcome.
    pub rollouts: IntCounterVec,
    pub rollout_targets: IntCounterVec,
    /// Webhook delivery attempts made by this node (as leader), by result.
    pub webhook_deliveries: IntCounterVec,
    /// Schedule slots fired, late slots given up (`missed`), slots skipped (`overlap`), and
    /// the delay of each firing from its slot's due instant.
    pub schedule_fires: IntCounter,
    pub schedule_missed: IntCounter,
    pub schedule_skipped: IntCounter,
    pub schedule_lag: prometheus::Histogram,
    /// Events committed to tenants' event logs through this node, by type.
    pub events: IntCounterVec,
}

/// The `kind` labels of `flux_gc_deleted_total`.
pub const GC_KINDS: [&str; 6] = [
    "job",
    "reconciler_job",
    "attempt",
    "output_chunk",
    "idempotency_key",
    "agent",
];
/// The `kind` labels of `flux_store_objects`.
pub const OBJECT_KINDS: [&str; 3] = ["job", "agent", "idempotency_key"];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let reg = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("unique metric");
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let gauge_vec = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(g.clone()));
            g
        };
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            reg(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = prometheus::Histogram::with_opts(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            )
            .expect("valid metric");
            reg(Box::new(h.clone()));
            h
        };
        let histogram_vec = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid metric");
            reg(Box::new(h.clone()));
            h
        };
        let m = Metrics {
            leader_status: gauge("flux_leader_status", "1 if this node is the leader, else 0"),
            leader_epoch: gauge(
                "flux_leader_epoch",
                "fencing epoch this node leads with (0 if not leader)",
            ),
            connected_agents: gauge(
                "flux_connected_agents",
                "agents in state online (as seen by the leader)",
            ),
            agents_by_state: gauge_vec("flux_agents", "agents by liveness state", &["state"]),
            queue_depth: gauge(
                "flux_queue_depth",
                "jobs waiting for an agent (as seen by the leader)",
            ),
            jobs_submitted: counter("flux_jobs_submitted_total", "jobs accepted by this node"),
            results_recorded: counter(
                "flux_results_recorded_total",
                "attempt results recorded by this node",
            ),
            task_polls_unread: counter(
                "flux_task_polls_unread_total",
                "task polls answered without reading the inbox (the change notices showed nothing new in it)",
            ),
            requeued: counter(
                "flux_attempts_requeued_total",
                "attempts taken back from agents and requeued by this node",
            ),
            fenced: counter(
                "flux_fenced_writes_total",
                "leader writes of this node rejected because another node holds a newer epoch",
            ),
            http_requests: counter_vec(
                "flux_http_requests_total",
                "HTTP requests by route, method and status",
                &["route", "method", "status"],
            ),
            http_duration: histogram_vec(
                "flux_http_request_duration_seconds",
                "HTTP request latency by route",
                &[
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
                ],
                &["route", "method"],
            ),
            reconcile_checks: counter(
                "flux_reconcile_checks_total",
                "desired-state check rounds started by this node as leader",
            ),
            reconcile_drift: counter(
                "flux_reconcile_drift_total",
                "targets found drifted (check failed) by this node as leader",
            ),
            reconcile_repairs: counter(
                "flux_reconcile_repairs_total",
                "drifted targets repaired and verified by this node as leader",
            ),
            reconcile_failures: counter(
                "flux_reconcile_failures_total",
                "reconcile rounds that ended failed (check could not run, apply failed, verify failed)",
            ),
            reconcile_deferred: counter(
                "flux_reconcile_deferred_total",
                "reconciler jobs not submitted (yet) because the tenant's quota refused them",
            ),
            reconcile_held: counter(
                "flux_reconcile_held_total",
                "applies held back by their state's rollout (no repair slot free, or remediation halted), per pass",
            ),
            state_targets: gauge_vec(
                "flux_state_targets",
                "desired-state targets by status (compliant, drifted, applying, failed, unknown)",
                &["status"],
            ),
            backups: counter_vec(
                "flux_backups_total",
                "scheduled backups written by this node, by result (ok, error)",
                &["result"],
            ),
            backup_last_success: gauge(
                "flux_backup_last_success_timestamp_seconds",
                "when this node last wrote a scheduled backup (0: never)",
            ),
            store_ops: histogram_vec(
                "flux_store_op_duration_seconds",
                "store operation latency by operation (get, list, commit, ...)",
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ],
                &["op"],
            ),
            jobs_finished: counter_vec(
                "flux_jobs_finished_total",
                "jobs that reached a final status through this node, by status",
                &["status"],
            ),
            dispatch_latency: {
                let h = prometheus::Histogram::with_opts(
                    HistogramOpts::new(
                        "flux_dispatch_latency_seconds",
                        "from a job's submission to its process starting on an agent (finished jobs)",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        300.0,
                    ]),
                )
                .expect("valid metric");
                reg(Box::new(h.clone()));
                h
            },
            integrity_mismatch: counter(
                "flux_integrity_mismatch_total",
                "broken audit chains found by integrity checks on this node",
            ),
            integrity_checks: counter(
                "flux_integrity_checks_total",
                "periodic audit-chain checks completed by this node as leader",
            ),
            audit_pruned: counter(
                "flux_audit_pruned_total",
                "exported audit records pruned by this node as leader (--audit-retention)",
            ),
            audit_failures: counter(
                "flux_audit_append_failures_total",
                "mutating calls whose audit record could not be written",
            ),
            store_writable: gauge(
                "flux_store_writable",
                "1 while the store commits writes, 0 while it cannot (a full disk, Redis refusing writes)",
            ),
            disk_refusals: counter(
                "flux_disk_refusals_total",
                "submissions refused because the store's disk had less than --min-free-disk free",
            ),
            gc_deleted: counter_vec(
                "flux_gc_deleted_total",
                "objects deleted by garbage collection on this node as leader, by kind",
                &["kind"],
            ),
            gc_conflicts: counter(
                "flux_gc_conflicts_total",
                "garbage-collection batches that lost a race with a change and were decided again",
            ),
            gc_backlog_refusals: counter(
                "flux_gc_backlog_refusals_total",
                "submissions refused because the tenant's collector was further behind than --gc-max-lag",
            ),
            gc_lag: gauge(
                "flux_gc_lag_seconds",
                "how long the collector has been behind on a tenant's finished jobs, the longest of any tenant (as seen by the leader)",
            ),
            store_objects: gauge_vec(
                "flux_store_objects",
                "objects in the store by kind, as counted by the last complete garbage-collection sweep (as seen by the leader)",
                &["kind"],
            ),
            enrollments: counter_vec(
                "flux_enrollments_total",
                "agent enrollments answered by this node, by result (ok, used_up, refused)",
                &["result"],
            ),
            renewals: counter(
                "flux_credential_renewals_total",
                "agent credentials renewed by this node",
            ),
            rollouts: counter_vec(
                "flux_rollouts_total",
                "rollouts finished on this node as leader, by result (succeeded, failed, halted, cancelled)",
                &["result"],
            ),
            rollout_targets: counter_vec(
                "flux_rollout_targets_total",
                "rollout targets ended on this node as leader, by outcome",
                &["outcome"],
            ),
            webhook_deliveries: counter_vec(
                "flux_webhook_deliveries_total",
                "webhook delivery attempts made by this node, by result (delivered, retried, failed)",
                &["result"],
            ),
            schedule_fires: counter(
                "flux_schedule_fires_total",
                "schedule slots fired by this node as leader",
            ),
            schedule_missed: counter(
                "flux_schedule_missed_total",
                "schedule slots given up by their missed policy (no leader fired them in time)",
            ),
            schedule_skipped: counter(
                "flux_schedule_skipped_total",
                "schedule slots skipped by their overlap policy (the previous run was unfinished)",
            ),
            schedule_lag: histogram(
                "flux_schedule_lag_seconds",
                "delay from a schedule slot's due instant to its firing by this node as leader",
                &[
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            ),
            events: counter_vec(
                "flux_events_total",
                "events committed to the tenants' event logs through this node, by type",
                &["type"],
            ),
            // Last: the helpers above borrow the registry until here.
            registry,
        };
        // Known label values start at zero, so dashboards and alerts see the series at once.
        for status in ["succeeded", "failed", "cancelled", "timed_out"] {
            m.jobs_finished.with_label_values(&[status]);
        }
        for result in ["ok", "error"] {
            m.backups.with_label_values(&[result]);
        }
        for t in flux_core::events::TYPES {
            m.events.with_label_values(&[t]);
        }
        for kind in GC_KINDS {
            m.gc_deleted.with_label_values(&[kind]);
        }
        for kind in OBJECT_KINDS {
            m.store_objects.with_label_values(&[kind]);
        }
        for result in ["ok", "used_up", "refused"] {
            m.enrollments.with_label_values(&[result]);
        }
        for result in ["succeeded", "failed", "halted", "cancelled"] {
            m.rollouts.with_label_values(&[result]);
        }
        for outcome in ["succeeded", "failed", "skipped", "cancelled"] {
            m.rollout_targets.with_label_values(&[outcome]);
        }
        m.store_writable.set(1);
        m
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("exposition format is UTF-8")
    }
}

/// The store's group-commit counters, read when `/metrics` is rendered:
/// `flux_store_commit_batches_total` (durable steps) and `flux_store_commit_requests_total`
/// (the commits they carried), whose ratio is the batch size.
struct CommitBatches {
    store: flux_core::store::DynStore,
    descs: Vec<prometheus::core::Desc>,
}

const BATCHES: (&str, &str) = (
    "flux_store_commit_batches_total",
    "durable store steps of this node (redb write transactions with their fsync, Redis commit script calls)",
);
const BATCHED: (&str, &str) = (
    "flux_store_commit_requests_total",
    "commits (and epoch updates) those steps carried",
);

impl prometheus::core::Collector for CommitBatches {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let Some((batches, requests)) = self.store.commit_batches() else {
            return Vec::new();
        };
        [(BATCHES, batches), (BATCHED, requests)]
            .into_iter()
            .flat_map(|((name, help), v)| {
                let c = IntCounter::new(name, help).expect("valid metric");
                c.inc_by(v);
                prometheus::core::Collector::collect(&c)
            })
            .collect()
    }
}

impl Metrics {
    /// Adds the group-commit counters of `store` (once per registry).
    pub fn watch_commits(&self, store: flux_core::store::DynStore) {
        let descs = [BATCHES, BATCHED]
            .into_iter()
            .map(|(name, help)| {
                prometheus::core::Desc::new(
                    name.into(),
                    help.into(),
                    Vec::new(),
                    Default::default(),
                )
                .expect("valid metric")
            })
            .collect();
        if let Err(e) = self
            .registry
            .register(Box::new(CommitBatches { store, descs }))
        {
            tracing::warn!(error = %e, "group-commit counters not registered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_core::store::{Expect, Key, Txn};

    /// A series' value in the text format.
    fn value(text: &str, name: &str) -> Option<u64> {
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
    }

    #[tokio::test]
    async fn the_store_group_commit_counters_are_exported_as_they_stand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flux.redb");
        let store = flux_core::store::open(&format!("redb:{}", path.display()))
            .await
            .unwrap();
        let m = Metrics::new();
        m.watch_commits(store.clone());
        // Concurrent commits: some share a durable step, so the two counters differ.
        let commits = (0..64).map(|i| {
            let k = Key::new("acme", format!("x/{i}")).unwrap();
            store.commit(Txn::new().put(k, b"v".to_vec(), Expect::Absent))
        });
        for r in futures::future::join_all(commits).await {
            r.unwrap();
        }
        let (batches, requests) = store.commit_batches().unwrap();
        assert!(requests >= 64 && batches >= 1 && batches <= requests);
        let text = m.render();
        assert_eq!(value(&text, BATCHES.0), Some(batches), "{text}");
        assert_eq!(value(&text, BATCHED.0), Some(requests), "{text}");
        // Read when rendered: later commits show at the next scrape.
        let k = Key::new("acme", "y").unwrap();
        store
            .commit(Txn::new().put(k, b"v".to_vec(), Expect::Absent))
            .await
            .unwrap();
        assert_eq!(value(&m.render(), BATCHED.0), Some(requests + 1));
    }
}
