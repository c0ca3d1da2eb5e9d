//! What each route needs before its handler runs: who may call it ([`Access`]) and which pool
//! of the node's request limits it is counted in ([`PoolKind`]). One table ([`rule`]) over the
//! method and the matched route; nothing in it looks at the query text or the body, so neither
//! can move a request to another pool or past its role check.
//!
//! `middleware::access` checks the access before any body byte is read, and
//! `middleware::limits` admits the request to its pool.

use axum::http::Method;
use flux_core::auth::{CLUSTER_TENANT, Claims, Permission, Role};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a token (probes, the 404 of unknown routes).
    Public,
    /// Any valid token; the handler decides the rest.
    Authenticated,
    /// A token whose role allows this.
    Permission(Permission),
    /// An agent token naming its node.
    Agent,
    /// Admins of any tenant (the handler checks which tenants they may see).
    Admin,
    /// Admins of the cluster tenant.
    ClusterAdmin,
}

impl Access {
    /// Whether `claims` may call a route with this access; the refusal's message otherwise.
    pub fn check(self, claims: &Claims) -> Result<(), String> {
        let ok = match self {
            Access::Public | Access::Authenticated => true,
            Access::Permission(p) => claims.role.allows(p),
            Access::Agent if claims.role.allows(Permission::AgentProtocol) => {
                if claims.node_id.is_none() {
                    return Err("agent token carries no node id".into());
                }
                true
            }
            Access::Agent => false,
            Access::Admin => claims.role == Role::Admin,
            Access::ClusterAdmin => claims.role == Role::Admin && claims.tenant == CLUSTER_TENANT,
        };
        if ok {
            return Ok(());
        }
        Err(match self {
            Access::Permission(p) => format!("role {} may not do this ({p:?})", claims.role),
            Access::Agent => format!("role {} may not use the agent protocol", claims.role),
            Access::Admin => format!("role {} may not do this (admins only)", claims.role),
            _ => format!("only admins of tenant {CLUSTER_TENANT:?} may do this"),
        })
    }
}

/// The pools of concurrent requests a node keeps apart, so that one kind cannot starve another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PoolKind {
    /// Ordinary requests, answered once built.
    Requests,
    /// Users' long-polls and streams: job waits and job logs (followed or not). The permit is
    /// held until the response body ends.
    Streams,
    /// Agents' task long-polls.
    AgentPolls,
    /// The rest of the agent protocol: heartbeats and attempt start, output and result.
    AgentCalls,
    /// Agent registrations.
    Registrations,
}

impl PoolKind {
    pub const ALL: [PoolKind; 5] = [
        PoolKind::Requests,
        PoolKind::Streams,
        PoolKind::AgentPolls,
        PoolKind::AgentCalls,
        PoolKind::Registrations,
    ];

    /// Whether the permit is held until the response body ends, not only until the handler
    /// returns: the pools whose routes answer with a stream, or (agents' task polls) wait in
    /// the reply's body.
    pub fn holds_body(self) -> bool {
        matches!(self, PoolKind::Streams | PoolKind::AgentPolls)
    }

    /// What the pool counts, for the 429's message.
    pub fn what(self) -> &'static str {
        match self {
            PoolKind::Requests => "requests",
            PoolKind::Streams => "long-polls",
            PoolKind::AgentPolls => "agent polls",
            PoolKind::AgentCalls => "agent protocol calls",
            PoolKind::Registrations => "registrations",
        }
    }
}

/// What a route needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub access: Access,
    pub pool: PoolKind,
    /// Whether the body must arrive within the node's body read timeout (all routes but the
    /// restore of a backup, which has an hour).
    pub body_deadline: bool,
}

/// The rule of `method` on the matched `route` (`None`: no route matched, the 404 fallback).
/// A method a route does not serve (answered 405) needs a token.
pub fn rule(method: &Method, route: Option<&str>) -> Rule {
    use Access::{Admin, Agent, Authenticated, ClusterAdmin, Public};
    use PoolKind::*;
    use flux_core::auth::Permission::*;
    let Some(route) = route else {
        return Rule {
            access: Public,
            pool: Requests,
            body_deadline: true,
        };
    };
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let put = *method == Method::PUT;
    let delete = *method == Method::DELETE;
    let (access, pool) = match route {
        "/healthz" | "/readyz" if get => (Public, Requests),
        // The handler also checks the tenant (the cluster's) and the role.
        "/metrics" if get => (Authenticated, Requests),
        "/v1/status" if get => (Access::Permission(ReadCluster), Requests),
        "/jobs" if post => (Access::Permission(SubmitJobs), Requests),
        "/v1/jobs" if post => (Access::Permission(SubmitJobs), Requests),
        "/v1/jobs" | "/v1/jobs/{id}" | "/v1/jobs/{id}/attempts" if get => {
            (Access::Permission(ReadJobs), Requests)
        }
        "/v1/jobs/{id}/logs" | "/v1/jobs/{id}/wait" if get => {
            (Access::Permission(ReadJobs), Streams)
        }
        // Submits, then waits in its body: a long-poll. Every role that may submit may read
        // jobs (the handler checks both).
        "/v1/jobs/run" if post => (Access::Permission(SubmitJobs), Streams),
        "/v1/events" if get => (Access::Permission(ReadJobs), Streams),
        "/v1/webhooks" | "/v1/webhooks/{name}" if get => (Admin, Requests),
        "/v1/webhooks" | "/v1/webhooks/{name}/test" if post => (Admin, Requests),
        "/v1/webhooks/{name}" if delete => (Admin, Requests),
        "/v1/jobs/{id}/cancel" if post => (Access::Permission(CancelJobs), Requests),
        "/v1/rollouts" if post => (Access::Permission(SubmitJobs), Requests),
        "/v1/rollouts" | "/v1/rollouts/{id}" if get => (Access::Permission(ReadJobs), Requests),
        "/v1/rollouts/{id}/pause" | "/v1/rollouts/{id}/resume" | "/v1/rollouts/{id}/retry"
            if post =>
        {
            (Access::Permission(SubmitJobs), Requests)
        }
        "/v1/rollouts/{id}/cancel" if post => (Access::Permission(CancelJobs), Requests),
        "/v1/agents" | "/v1/agents/{id}" if get => (Access::Permission(ReadAgents), Requests),
        "/v1/agents/{id}/labels" if post => (Admin, Requests),
        "/v1/tokens" | "/v1/tokens/revoke" if post => (Access::Permission(ManageTokens), Requests),
        "/v1/whoami" if get => (Authenticated, Requests),
        "/v1/enroll" if post => (Access::Permission(Enroll), Registrations),
        "/v1/agent/renew" if post => (Agent, AgentCalls),
        "/v1/agents/{id}/revoke" if post => (Access::Permission(ManageTokens), Requests),
        "/v1/agents/{id}/drain" | "/v1/agents/{id}/uncordon" if post => {
            (Access::Permission(ManageAgents), Requests)
        }
        "/v1/agent/register" if post => (Agent, Registrations),
        "/v1/agent/tasks" if get => (Agent, AgentPolls),
        "/v1/agent/heartbeat"
        | "/v1/agent/attempts/{id}/start"
        | "/v1/agent/attempts/{id}/output"
        | "/v1/agent/attempts/{id}/result"
            if post =>
        {
            (Agent, AgentCalls)
        }
        "/states" if post => (Access::Permission(ManageStates), Requests),
        // A dry run is a read; the handler asks for more once the body says it is not one.
        "/v1/states" if get || post => (Access::Permission(ReadStates), Requests),
        "/v1/states/{name}" if get => (Access::Permission(ReadStates), Requests),
        "/v1/states/{name}" if put || delete => (Access::Permission(ManageStates), Requests),
        "/v1/schedules" | "/v1/schedules/{name}" if get => {
            (Access::Permission(ReadStates), Requests)
        }
        "/v1/schedules" if post => (Access::Permission(ManageStates), Requests),
        "/v1/schedules/{name}" if put || delete => (Access::Permission(ManageStates), Requests),
        "/v1/schedules/{name}/pause"
        | "/v1/schedules/{name}/resume"
        | "/v1/schedules/{name}/trigger"
            if post =>
        {
            (Access::Permission(ManageStates), Requests)
        }
        "/v1/audit" | "/v1/audit/verify" if get => (Admin, Requests),
        "/v1/audit/export" if post => (Admin, Requests),
        // An export file is as large as a backup: its upload has the backup routes' limits.
        "/v1/audit/verify-file" if post => {
            return Rule {
                access: Admin,
                pool: Requests,
                body_deadline: false,
            };
        }
        "/v1/tenants" if get => (Admin, Requests),
        "/v1/tenants" if post => (ClusterAdmin, Requests),
        "/v1/tenants/{tenant}/quota" if get => (Admin, Requests),
        "/v1/tenants/{tenant}/quota" if put => (ClusterAdmin, Requests),
        "/v1/backup" if get => (ClusterAdmin, Requests),
        "/v1/backup/restore" | "/v1/backup/verify" if post => {
            return Rule {
                access: ClusterAdmin,
                pool: Requests,
                body_deadline: false,
            };
        }
        _ => (Authenticated, Requests),
    };
    Rule {
        access,
        pool,
        body_deadline: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(role: Role, tenant: &str, node: Option<&str>) -> Claims {
        Claims::sample(role, tenant, node)
    }

    #[test]
    fn the_pool_follows_the_route_and_never_the_query() {
        let r = |m: Method, p: &str| rule(&m, Some(p)).pool;
        assert_eq!(r(Method::GET, "/v1/jobs/{id}/logs"), PoolKind::Streams);
        assert_eq!(r(Method::GET, "/v1/jobs/{id}/wait"), PoolKind::Streams);
        assert_eq!(r(Method::GET, "/v1/jobs"), PoolKind::Requests);
        assert_eq!(r(Method::GET, "/v1/agent/tasks"), PoolKind::AgentPolls);
        assert_eq!(
            r(Method::POST, "/v1/agent/register"),
            PoolKind::Registrations
        );
        for p in [
            "/v1/agent/heartbeat",
            "/v1/agent/attempts/{id}/start",
            "/v1/agent/attempts/{id}/output",
            "/v1/agent/attempts/{id}/result",
        ] {
            assert_eq!(r(Method::POST, p), PoolKind::AgentCalls, "{p}");
        }
        // Only the streams and the agent polls pools keep their permits for the body.
        for k in PoolKind::ALL {
            let streams = matches!(k, PoolKind::Streams | PoolKind::AgentPolls);
            assert_eq!(k.holds_body(), streams, "{k:?}");
        }
        // Every route whose response is a stream, or waits in its body, is in such a pool.
        assert!(r(Method::GET, "/v1/jobs/{id}/logs").holds_body());
        assert!(r(Method::GET, "/v1/agent/tasks").holds_body());
    }

    #[test]
    fn roles_are_checked_per_route() {
        let viewer = claims(Role::Viewer, "acme", None);
        let operator = claims(Role::Operator, "acme", None);
        let admin = claims(Role::Admin, "acme", None);
        let cluster_admin = claims(Role::Admin, CLUSTER_TENANT, None);
        let agent = claims(Role::Agent, "acme", Some("n1"));
        let nameless_agent = claims(Role::Agent, "acme", None);
        let a = |m: Method, p: &str| rule(&m, Some(p)).access;
        let submit = a(Method::POST, "/v1/jobs");
        assert!(submit.check(&viewer).is_err());
        assert!(submit.check(&agent).is_err());
        assert!(submit.check(&operator).is_ok());
        assert!(a(Method::POST, "/jobs").check(&viewer).is_err());
        assert!(a(Method::GET, "/v1/jobs").check(&viewer).is_ok());
        assert!(a(Method::GET, "/v1/jobs").check(&agent).is_err());
        let register = a(Method::POST, "/v1/agent/register");
        assert!(register.check(&viewer).is_err());
        assert!(register.check(&cluster_admin).is_err());
        assert!(register.check(&agent).is_ok());
        assert_eq!(
            register.check(&nameless_agent),
            Err("agent token carries no node id".to_string())
        );
        let put_state = a(Method::PUT, "/v1/states/{name}");
        assert!(put_state.check(&viewer).is_err());
        assert!(put_state.check(&operator).is_ok());
        // Viewers may dry-run an apply: the handler looks at the body for the rest.
        assert!(a(Method::POST, "/v1/states").check(&viewer).is_ok());
        for (m, p) in [
            (Method::PUT, "/v1/tenants/{tenant}/quota"),
            (Method::POST, "/v1/tenants"),
            (Method::POST, "/v1/backup/restore"),
            (Method::POST, "/v1/backup/verify"),
            (Method::GET, "/v1/backup"),
        ] {
            assert!(a(m.clone(), p).check(&admin).is_err(), "{m} {p}");
            assert!(a(m.clone(), p).check(&operator).is_err(), "{m} {p}");
            assert!(a(m.clone(), p).check(&cluster_admin).is_ok(), "{m} {p}");
        }
        let label = a(Method::POST, "/v1/agents/{id}/labels");
        assert!(label.check(&operator).is_err() && label.check(&agent).is_err());
        assert!(label.check(&admin).is_ok());
        assert!(a(Method::GET, "/v1/audit").check(&operator).is_err());
        assert!(a(Method::GET, "/v1/audit").check(&admin).is_ok());
        for p in ["/v1/audit/export", "/v1/audit/verify-file"] {
            assert!(a(Method::POST, p).check(&operator).is_err(), "{p}");
            assert!(a(Method::POST, p).check(&admin).is_ok(), "{p}");
        }
        assert!(a(Method::POST, "/v1/tokens").check(&operator).is_err());
        assert!(a(Method::POST, "/v1/tokens").check(&admin).is_ok());
        assert_eq!(a(Method::GET, "/healthz"), Access::Public);
        assert_eq!(rule(&Method::POST, None).access, Access::Public);
        // A method a route does not serve still needs a token.
        assert_eq!(a(Method::PATCH, "/v1/jobs"), Access::Authenticated);
    }

    #[test]
    fn only_the_backup_and_audit_file_uploads_have_no_body_deadline() {
        assert!(!rule(&Method::POST, Some("/v1/backup/restore")).body_deadline);
        assert!(!rule(&Method::POST, Some("/v1/backup/verify")).body_deadline);
        assert!(!rule(&Method::POST, Some("/v1/audit/verify-file")).body_deadline);
        assert!(rule(&Method::POST, Some("/v1/jobs")).body_deadline);
        assert!(rule(&Method::POST, Some("/v1/agent/register")).body_deadline);
    }
}
