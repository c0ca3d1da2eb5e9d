//! The whole store key layout: every path FluxForge reads or writes, in one place.
//!
//! A [`crate::store::Key`] is a tenant plus a path; this module builds the paths. Objects of a
//! tenant live inside that tenant (`jobs/`, `jobidx/`, `pending/`, `attempts/`, `inbox/`,
//! `agents/`, `liveness/`, `output/`, `idem/`, `secrets/`, `states/`, `state_status/`, `audit/`,
//! `gc/`); records of
//! the cluster itself live in [`crate::store::SYSTEM_TENANT`] (`nodes/`, `tenants/`, `quotas/`,
//! `revoked/`).
//!
//! These strings are a file format: they are what redb and Redis hold and what a backup carries,
//! so changing one orphans every stored object under the old path. The unit tests below pin each
//! of them. Nothing else in the crate builds a path by hand.
//!
//! Ordering matters where the code relies on it: job ids are time-ordered (UUIDv7), so the
//! `pending/` and `jobs/` prefixes list oldest first; attempt numbers and output sequence numbers
//! are zero-padded so that their listings are in numeric order.

use crate::store::SYSTEM_TENANT;

// ---- jobs -----------------------------------------------------------------------------------

/// Prefix of every job record.
pub const JOBS: &str = "jobs/";
pub fn job(job_id: &str) -> String {
    format!("jobs/{job_id}")
}

/// Prefix of the queue: one entry per queued job, describing it (`model::Pending`).
pub const PENDING: &str = "pending/";
pub fn pending(job_id: &str) -> String {
    format!("pending/{job_id}")
}

/// Prefix of every attempt record.
pub const ATTEMPTS: &str = "attempts/";
/// Prefix of the job listing indexes: one empty entry per job and indexed value, written in
/// the same transaction as the job record, so that a filtered listing reads about what it
/// returns. Entries end in the job id (time-ordered), so each index lists oldest first.
pub const JOB_INDEX: &str = "jobidx/";
/// The jobs of one kind: `jobidx/kind/<kind>/`.
pub fn job_kind_index(kind: &str) -> String {
    format!("{JOB_INDEX}kind/{kind}/")
}
/// The jobs of one kind with one value of another dimension, e.g.
/// `jobidx/status/running/user/`. `dim` is `status`, `agent` or `group`; `value` a status,
/// node id or group id. Split by kind so that the usual listing (users' jobs in some status)
/// reads only what it returns, even when the reconciler's jobs outnumber them.
pub fn job_index(dim: &str, value: &str, kind: &str) -> String {
    format!("{JOB_INDEX}{dim}/{value}/{kind}/")
}
/// One entry of an index (`index` from [`job_kind_index`] or [`job_index`]).
pub fn job_index_entry(index: &str, job_id: &str) -> String {
    format!("{index}{job_id}")
}
/// The job id an index entry points to (its last segment).
pub fn job_index_target(path: &str) -> Option<&str> {
    path.strip_prefix(JOB_INDEX)?.rsplit('/').next()
}
/// The status and job id an entry of a status index names (`jobidx/status/<status>/<kind>/<id>`,
/// from [`job_index`] with `dim` `status`).
pub fn job_status_entry(path: &str) -> Option<(&str, &str)> {
    let mut parts = path
        .strip_prefix(JOB_INDEX)?
        .strip_prefix("status/")?
        .split('/');
    let (status, _kind, id) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && !status.is_empty() && !id.is_empty()).then_some((status, id))
}
/// Marker that every job of the tenant has its index entries (written once the migration of
/// jobs stored before the indexes existed has run over the whole tenant).
pub const JOB_INDEX_BUILT: &str = "jobidx_built";

pub fn attempt(job_id: &str, number: u32) -> String {
    format!("attempts/{job_id}/{number:04}")
}
pub fn attempts(job_id: &str) -> String {
    format!("attempts/{job_id}/")
}

/// Prefix of every agent's inbox.
pub const INBOX: &str = "inbox/";
pub fn inbox(agent: &str) -> String {
    format!("{INBOX}{agent}/")
}
pub fn inbox_entry(agent: &str, attempt_id: &str) -> String {
    format!("inbox/{agent}/{attempt_id}")
}

pub const AGENTS: &str = "agents/";
pub fn agent(node_id: &str) -> String {
    format!("agents/{node_id}")
}

/// Prefix of every output chunk.
pub const OUTPUT: &str = "output/";
/// Output chunks of one attempt.
pub fn output(attempt_id: &str) -> String {
    format!("output/{attempt_id}/")
}
/// Output chunks of every attempt of a job (attempt ids are `<job_id>.<number>`).
pub fn job_output(job_id: &str) -> String {
    format!("output/{job_id}.")
}
pub fn output_chunk(attempt_id: &str, seq: u64) -> String {
    format!("output/{attempt_id}/{seq:010}")
}

/// Prefix of every idempotency key record (its value: the id of the job it names).
pub const IDEMPOTENCY: &str = "idem/";
pub fn idempotency(key: &str) -> String {
    format!("{IDEMPOTENCY}{key}")
}

/// Values of a job's secret environment variables.
pub fn secrets(job_id: &str) -> String {
    format!("secrets/{job_id}")
}

/// Prefix of the nodes' liveness records: what each fluxd node heard of the tenant's agents.
pub const LIVENESS: &str = "liveness/";
/// The liveness record one fluxd node publishes for the tenant's agents it hears from.
pub fn liveness(node: &str) -> String {
    format!("{LIVENESS}{node}")
}

// ---- desired state --------------------------------------------------------------------------

pub const STATES: &str = "states/";
pub fn state(name: &str) -> String {
    format!("states/{name}")
}

/// Prefix of every target status of every state.
pub const STATUSES: &str = "state_status/";
pub fn statuses(name: &str) -> String {
    format!("state_status/{name}/")
}
pub fn status(name: &str, agent: &str) -> String {
    format!("state_status/{name}/{agent}")
}

/// Prefix of every state's rollout record (its halt, and what a resume forgave).
pub const STATE_ROLLOUTS: &str = "state_rollout/";
pub fn state_rollout(name: &str) -> String {
    format!("{STATE_ROLLOUTS}{name}")
}

// ---- rollouts ------------------------------------------------------------------------------

/// Prefix of every rollout record (ids are time-ordered: oldest first).
pub const ROLLOUTS: &str = "rollouts/";
pub fn rollout(id: &str) -> String {
    format!("{ROLLOUTS}{id}")
}
/// Prefix of the markers of unfinished rollouts: one empty entry per rollout the leader still
/// drives, written with its record and deleted in the transaction that finishes it.
pub const ROLLOUTS_ACTIVE: &str = "rollout_active/";
pub fn rollout_active(id: &str) -> String {
    format!("{ROLLOUTS_ACTIVE}{id}")
}

// ---- schedules --------------------------------------------------------------------------------

/// Prefix of every schedule (its spec, written by users).
pub const SCHEDULES: &str = "schedules/";
pub fn schedule(name: &str) -> String {
    format!("{SCHEDULES}{name}")
}
/// Prefix of every schedule's status (its firing cursor and last runs, written by firings).
pub const SCHEDULE_STATUS: &str = "schedule_status/";
pub fn schedule_status(name: &str) -> String {
    format!("{SCHEDULE_STATUS}{name}")
}
/// Values of a schedule's secret environment variables (its record holds digests only).
pub const SCHEDULE_SECRETS: &str = "schedule_secrets/";
pub fn schedule_secrets(name: &str) -> String {
    format!("{SCHEDULE_SECRETS}{name}")
}

// ---- audit (inside each tenant) ---------------------------------------------------------------

/// The head of a tenant's audit chain (sequence number and hash of the last record).
pub const AUDIT_HEAD: &str = "audit_head";
pub const AUDIT: &str = "audit/";
/// The signed base of a chain whose oldest records were exported and pruned: the last record
/// removed and its MAC. Verification starts there.
pub const AUDIT_BASE: &str = "audit_base";
/// The signed mark of the newest record exported; nothing past it is pruned.
pub const AUDIT_EXPORTED: &str = "audit_exported";
pub fn audit_record(seq: u64) -> String {
    format!("{AUDIT}{seq:016}")
}

// ---- retention (inside each tenant) -----------------------------------------------------------

/// The tenant's garbage-collection record: where the collector's sweep stands, what the last
/// complete sweep counted and what it has deleted so far (`retention::GcState`).
pub const GC_STATE: &str = "gc/state";

// ---- the cluster's own records (in SYSTEM_TENANT) -------------------------------------------

/// Each fluxd node's own record (address, version, last seen).
pub const NODES: &str = "nodes/";
pub fn node(node_id: &str) -> String {
    format!("nodes/{node_id}")
}

/// Whether an object is one of the nodes' own records, which a restore tolerates and replaces.
pub fn is_node_record(tenant: &str, path: &str) -> bool {
    tenant == SYSTEM_TENANT && path.starts_with(NODES)
}

/// Tenants created through the API.
pub const TENANTS: &str = "tenants/";
pub fn tenant(name: &str) -> String {
    format!("tenants/{name}")
}

pub const QUOTAS: &str = "quotas/";
pub fn quota(tenant: &str) -> String {
    format!("quotas/{tenant}")
}

/// Revoked token ids, per tenant.
pub const REVOKED: &str = "revoked/";
pub fn revoked(tenant: &str, jti: &str) -> String {
    format!("revoked/{tenant}/{jti}")
}

/// Marks the revocation of every credential of one agent, beside the token ids (a token id is
/// an identifier and never holds '=', so the two never meet).
pub const NODE_REVOKED_PREFIX: &str = "node=";
pub fn revoked_node(tenant: &str, node_id: &str) -> String {
    format!("revoked/{tenant}/{NODE_REVOKED_PREFIX}{node_id}")
}

// ---- enrollment (inside each tenant) ----------------------------------------------------------

/// Uses counted of each enrollment token, by its id.
pub const ENROLLMENTS: &str = "enrollments/";
pub fn enrollment(jti: &str) -> String {
    format!("{ENROLLMENTS}{jti}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored layout is a file format: these are exactly the paths written before the key
    /// functions were gathered here.
    #[test]
    fn paths_are_exactly_the_stored_layout() {
        assert_eq!(JOBS, "jobs/");
        assert_eq!(job("j-1"), "jobs/j-1");
        assert_eq!(PENDING, "pending/");
        assert_eq!(pending("j-1"), "pending/j-1");
        assert_eq!(JOB_INDEX, "jobidx/");
        assert_eq!(job_kind_index("user"), "jobidx/kind/user/");
        assert_eq!(
            job_index("status", "running", "user"),
            "jobidx/status/running/user/"
        );
        assert_eq!(
            job_index_entry(&job_index("agent", "a1", "reconciler"), "j-1"),
            "jobidx/agent/a1/reconciler/j-1"
        );
        assert_eq!(
            job_index_entry(&job_kind_index("user"), "j-1"),
            "jobidx/kind/user/j-1"
        );
        assert_eq!(job_index_target("jobidx/group/g-1/user/j-1"), Some("j-1"));
        assert_eq!(job_index_target("jobs/j-1"), None);
        let entry = job_index_entry(&job_index("status", "succeeded", "user"), "j-1");
        assert_eq!(job_status_entry(&entry), Some(("succeeded", "j-1")));
        for other in [
            "jobidx/agent/a/user/j-1",
            "jobidx/status/succeeded/user/",
            "jobidx/status/succeeded/user/j-1/x",
            "jobidx/status//user/j-1",
            "jobidx/kind/user/j-1",
            "jobs/j-1",
        ] {
            assert_eq!(job_status_entry(other), None, "{other}");
        }
        assert_eq!(JOB_INDEX_BUILT, "jobidx_built");
        assert_eq!(attempt("j-1", 3), "attempts/j-1/0003");
        assert_eq!(attempt("j-1", 12345), "attempts/j-1/12345");
        assert_eq!(attempts("j-1"), "attempts/j-1/");
        assert_eq!(INBOX, "inbox/");
        assert_eq!(inbox("a1"), "inbox/a1/");
        assert_eq!(inbox_entry("a1", "j-1.2"), "inbox/a1/j-1.2");
        assert_eq!(AGENTS, "agents/");
        assert_eq!(agent("a1"), "agents/a1");
        assert_eq!(LIVENESS, "liveness/");
        assert_eq!(liveness("fluxd-1"), "liveness/fluxd-1");
        assert_eq!(output("j-1.2"), "output/j-1.2/");
        assert_eq!(job_output("j-1"), "output/j-1.");
        assert_eq!(output_chunk("j-1.2", 7), "output/j-1.2/0000000007");
        assert_eq!(idempotency("k"), "idem/k");
        assert_eq!(secrets("j-1"), "secrets/j-1");
        assert_eq!(STATES, "states/");
        assert_eq!(state("motd"), "states/motd");
        assert_eq!(STATUSES, "state_status/");
        assert_eq!(statuses("motd"), "state_status/motd/");
        assert_eq!(status("motd", "a1"), "state_status/motd/a1");
        assert_eq!(AUDIT_HEAD, "audit_head");
        assert_eq!(AUDIT, "audit/");
        assert_eq!(AUDIT_BASE, "audit_base");
        assert_eq!(AUDIT_EXPORTED, "audit_exported");
        assert_eq!(audit_record(42), "audit/0000000000000042");
        assert_eq!(GC_STATE, "gc/state");
        assert_eq!(ATTEMPTS, "attempts/");
        assert_eq!(OUTPUT, "output/");
        assert_eq!(IDEMPOTENCY, "idem/");
        assert_eq!(NODES, "nodes/");
        assert_eq!(node("n1"), "nodes/n1");
        assert_eq!(TENANTS, "tenants/");
        assert_eq!(tenant("acme"), "tenants/acme");
        assert_eq!(QUOTAS, "quotas/");
        assert_eq!(quota("acme"), "quotas/acme");
        assert_eq!(REVOKED, "revoked/");
        assert_eq!(revoked("acme", "t1"), "revoked/acme/t1");
        assert_eq!(revoked_node("acme", "web-1"), "revoked/acme/node=web-1");
        assert_eq!(ENROLLMENTS, "enrollments/");
        assert_eq!(enrollment("t1"), "enrollments/t1");
    }

    #[test]
    fn listing_prefixes_cover_their_objects() {
        assert!(job("x").starts_with(JOBS));
        assert!(pending("x").starts_with(PENDING));
        assert!(job_kind_index("user").starts_with(JOB_INDEX));
        assert!(job_index("group", "g", "user").starts_with(JOB_INDEX));
        // Neither the records nor the marker are inside an index listing, and no index
        // entry is inside the job records' prefix.
        assert!(!job("x").starts_with(JOB_INDEX));
        assert!(!JOB_INDEX_BUILT.starts_with(JOB_INDEX));
        assert!(!job_index_entry(&job_kind_index("user"), "x").starts_with(JOBS));
        assert!(inbox_entry("a", "x.1").starts_with(&inbox("a")));
        assert!(inbox("a").starts_with(INBOX));
        assert!(agent("a").starts_with(AGENTS));
        assert!(liveness("n").starts_with(LIVENESS));
        assert!(attempt("x", 1).starts_with(&attempts("x")));
        assert!(attempts("x").starts_with(ATTEMPTS));
        assert!(job_output("x").starts_with(OUTPUT));
        assert!(output_chunk("x.1", 0).starts_with(&output("x.1")));
        assert!(output("x.1").starts_with(&job_output("x")));
        assert!(status("s", "a").starts_with(&statuses("s")));
        assert!(statuses("s").starts_with(STATUSES));
        assert!(state("s").starts_with(STATES));
        assert!(audit_record(1).starts_with(AUDIT));
        assert!(revoked("t", "j").starts_with(REVOKED));
        assert!(revoked_node("t", "n").starts_with(REVOKED));
        assert!(enrollment("j").starts_with(ENROLLMENTS));
        assert!(quota("t").starts_with(QUOTAS));
        assert!(idempotency("k").starts_with(IDEMPOTENCY));
        assert!(tenant("t").starts_with(TENANTS));
    }

    #[test]
    fn node_records_are_the_system_tenants_nodes() {
        assert!(is_node_record(SYSTEM_TENANT, &node("n1")));
        assert!(!is_node_record("acme", &node("n1")));
        assert!(!is_node_record(SYSTEM_TENANT, &tenant("acme")));
    }
}
