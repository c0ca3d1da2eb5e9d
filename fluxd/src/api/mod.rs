//! The HTTP API: [`app`] is the whole route table with its layers and the fallback, one module
//! per resource holds the handlers, [`crate::error`] the one JSON error shape and [`extract`]
//! what handlers take from a request (body, query, caller, precondition headers).
//!
//! Layers, outermost first: the drain of a body left unread (`middleware::drain`), the body
//! limit, RED metrics (`middleware::metrics`), the token and role check of the route
//! (`middleware::access`, before any body byte is read), load shedding by pool, tenant and token
//! with the body read timeout (`middleware::limits`; these five are one stack, see [`app`]), the
//! audit record of matched routes (`middleware::audit`), then a time limit per group of routes.

pub mod agent_admin;
pub mod agent_protocol;
pub mod agents;
pub mod audit;
pub mod backup;
pub mod cluster;
mod declared;
pub mod enroll;
pub mod events;
pub mod extract;
pub mod jobs;
pub mod reply;
pub mod rollouts;
pub mod schedules;
pub mod states;
pub mod tenants;
pub mod tokens;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use flux_core::reconcile::Reconciler;
use flux_core::rollout::Control;
use flux_core::schedule::Schedules;
use tower_http::timeout::TimeoutLayer;

use crate::error::ApiError;
use crate::middleware::limits::{Limits, PoolSizes};
use crate::state::AppState;

/// Longest a long-poll (tasks, wait, logs idle) is held open.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// The request limits of a node (its `--max-*` arguments).
#[derive(Clone, Copy, Debug)]
pub struct ApiLimits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Largest backup accepted by `POST /v1/backup/restore`.
    pub max_restore_bytes: usize,
    /// Ordinary requests served at once.
    pub max_requests: usize,
    /// Long-polls held at once (agents' task polls get a pool as large).
    pub max_long_polls: usize,
    /// Agent registrations processed at once.
    pub max_registrations: usize,
    /// Agent protocol calls (heartbeats, attempt start, output, result) served at once.
    pub max_agent_requests: usize,
    /// The largest share of every pool one tenant, and one token, may hold.
    pub shares: crate::middleware::limits::Shares,
    /// Time allowed for a request body to arrive (the restore of a backup excepted).
    pub body_read_timeout: Duration,
}

/// The whole API of a node: every route, its layers and the JSON 404 fallback. Served by
/// `node::run`; tests can drive it in-process.
pub fn app(state: Arc<AppState>, limits: &ApiLimits) -> Router {
    // Routes answered within MAX_WAIT and a margin: every long-poll ends before that.
    let timed = Router::new()
        .route("/healthz", get(cluster::healthz))
        .route("/readyz", get(cluster::readyz))
        .route("/metrics", get(cluster::metrics))
        .route("/v1/status", get(cluster::status))
        .route("/jobs", post(jobs::submit_job))
        .route("/v1/jobs", post(jobs::submit_job).get(jobs::list_jobs))
        .route("/v1/jobs/run", post(jobs::run_job))
        .route("/v1/jobs/{id}", get(jobs::get_job))
        .route("/v1/jobs/{id}/attempts", get(jobs::job_attempts))
        .route("/v1/jobs/{id}/logs", get(jobs::job_logs))
        .route("/v1/jobs/{id}/wait", get(jobs::wait_job))
        .route("/v1/jobs/{id}/cancel", post(jobs::cancel_job))
        .route("/v1/rollouts", post(rollouts::create).get(rollouts::list))
        .route("/v1/rollouts/{id}", get(rollouts::get_one))
        .route("/v1/rollouts/{id}/pause", rollouts::route(Control::Pause))
        .route("/v1/rollouts/{id}/resume", rollouts::route(Control::Resume))
        .route("/v1/rollouts/{id}/cancel", rollouts::route(Control::Cancel))
        .route("/v1/rollouts/{id}/retry", post(rollouts::retry))
        .route("/v1/agents", get(agents::list_agents))
        .route("/v1/agents/{id}", get(agents::get_agent))
        .route("/v1/agents/{id}/labels", post(agents::label_agent))
        .route("/v1/tokens", post(tokens::create_token))
        .route("/v1/tokens/revoke", post(tokens::revoke_token))
        .route("/v1/whoami", get(tokens::whoami))
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/agent/renew", post(enroll::renew))
        .route("/v1/agents/{id}/revoke", post(agent_admin::revoke))
        .route("/v1/agents/{id}/drain", post(agent_admin::drain))
        .route("/v1/agents/{id}/uncordon", post(agent_admin::uncordon))
        .route("/v1/agent/register", post(agent_protocol::agent_register))
        .route("/v1/agent/heartbeat", post(agent_protocol::agent_heartbeat))
        .route("/v1/agent/tasks", get(agent_protocol::agent_tasks))
        .route(
            "/v1/agent/attempts/{id}/start",
            post(agent_protocol::attempt_start),
        )
        .route(
            "/v1/agent/attempts/{id}/output",
            post(agent_protocol::attempt_output),
        )
        .route(
            "/v1/agent/attempts/{id}/result",
            post(agent_protocol::attempt_result),
        )
        .route("/states", post(states::seed_create))
        .route("/v1/states", get(states::list).post(states::apply))
        .route("/v1/states/{name}", declared::route::<Reconciler>())
        .route("/v1/states/{name}/resume", post(states::resume))
        .route(
            "/v1/schedules",
            get(schedules::list).post(schedules::create),
        )
        .route("/v1/schedules/{name}", declared::route::<Schedules>())
        .route(
            "/v1/schedules/{name}/pause",
            post(schedules::set_paused::<true>),
        )
        .route(
            "/v1/schedules/{name}/resume",
            post(schedules::set_paused::<false>),
        )
        .route("/v1/schedules/{name}/trigger", post(schedules::trigger))
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            MAX_WAIT + Duration::from_secs(30),
        ));
    // Backup routes move the whole store: they get their own body limit and a time limit of
    // an hour instead of the API's usual one.
    let backup = Router::new()
        .route("/v1/backup", get(backup::create))
        .route(
            "/v1/backup/restore",
            post(backup::restore).layer(DefaultBodyLimit::max(limits.max_restore_bytes)),
        )
        .route(
            "/v1/backup/verify",
            post(backup::verify).layer(DefaultBodyLimit::max(limits.max_restore_bytes)),
        )
        .route(
            "/v1/audit/verify-file",
            post(audit::verify_file).layer(DefaultBodyLimit::max(limits.max_restore_bytes)),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            backup::BACKUP_TIMEOUT,
        ));
    // Audit and tenant routes have no time limit of their own; an event stream ends by
    // itself (`--max-follow`).
    let untimed = Router::new()
        .route("/v1/events", get(events::stream))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{name}",
            get(webhooks::get_one).delete(webhooks::delete_one),
        )
        .route("/v1/webhooks/{name}/test", post(webhooks::test))
        .route("/v1/audit", get(audit::log))
        .route("/v1/audit/verify", get(audit::verify))
        .route("/v1/audit/export", post(audit::export))
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{tenant}/quota",
            get(tenants::get_quota).put(tenants::put_quota),
        );
    let sizes = PoolSizes {
        requests: limits.max_requests,
        streams: limits.max_long_polls,
        agent_polls: limits.max_long_polls,
        agent_calls: limits.max_agent_requests,
        registrations: limits.max_registrations,
    };
    let shed = Arc::new(Limits::new(sizes, limits.shares, limits.body_read_timeout));
    // The layers every route shares, as one stack, outermost first. `Router::layer` wraps each
    // layer given to it in a boxed `Route`, and both a `Route` and a `from_fn` layer clone the
    // service they wrap on every call, boxes below included: with six layers added one by one,
    // a request cloned and dropped dozens of boxed services. One stack is one `Route` around
    // plain services (`request_cost_through_app` below: 7.6 to 6.9 µs a request).
    let shared = tower::ServiceBuilder::new()
        // Outermost: every refusal, the shed's 429 included, reaches HTTP/2 clients.
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(crate::middleware::drain::DrainLimits::for_body_limit(
                limits.max_body_bytes,
            )),
            crate::middleware::drain::drain_unread,
        ))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            crate::middleware::metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::access::authorize,
        ))
        .layer(axum::middleware::from_fn_with_state(
            shed,
            crate::middleware::limits::shed,
        ));
    Router::new()
        .merge(timed)
        .merge(backup)
        .merge(untimed)
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::middleware::audit::record,
        ))
        .layer(shared)
        .with_state(state)
}

/// The metrics listener's app (`--metrics-listen`): `/metrics` without a token, nothing else.
pub fn metrics_app(metrics: Arc<crate::metrics::Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = metrics.clone();
                async move { cluster::render_metrics(&m) }
            }),
        )
        .fallback(|| async { ApiError::not_found("only /metrics is served here") })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use flux_core::auth::{Authenticator, SigningKey};
    use flux_core::jobs::{Jobs, JobsConfig};
    use tower::ServiceExt;

    /// A measurement, run by hand, not a test of speed: the time a request takes through
    /// every layer and the route, in process (no TLS, no HTTP/2), printed per round. README,
    /// *Engine figures*: `cargo test --release -p fluxd --bin fluxd request_cost -- --ignored
    /// --nocapture`. It fails only if a request is not answered 200.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    #[ignore = "a measurement, run by hand"]
    async fn request_cost_through_app() {
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = test_app_and_state(dir.path()).await;
        let tok = token(&st, "default", flux_core::auth::Role::Admin);
        for round in 0..5 {
            let n = 50_000;
            let t0 = std::time::Instant::now();
            for _ in 0..n {
                let req = Request::get("/v1/whoami")
                    .header("authorization", format!("Bearer {tok}"))
                    .body(Body::empty())
                    .unwrap();
                let resp = app.clone().oneshot(req).await.unwrap();
                assert_eq!(resp.status(), StatusCode::OK);
                axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
            }
            let us = t0.elapsed().as_secs_f64() * 1e6 / f64::from(n);
            eprintln!("round {round}: {us:.2} µs a request");
        }
    }

    async fn test_app(dir: &std::path::Path) -> Router {
        test_app_and_state(dir).await.0
    }

    /// The app over a store whose operations are timed into the state's metrics.
    async fn test_app_and_state(dir: &std::path::Path) -> (Router, Arc<AppState>) {
        test_app_and_state_with(dir, |_| {}).await
    }

    /// [`test_app_and_state`] with node settings changed by `set`.
    async fn test_app_and_state_with(
        dir: &std::path::Path,
        set: impl FnOnce(&mut AppState),
    ) -> (Router, Arc<AppState>) {
        let metrics = Arc::new(crate::metrics::Metrics::new());
        let store = flux_core::store::open(&format!("redb:{}", dir.join("flux.redb").display()))
            .await
            .unwrap();
        let store = crate::store_layers::Timed::wrap(store, metrics.store_ops.clone());
        let (key, _) = SigningKey::load_or_create(&dir.join("signing-key.json")).unwrap();
        let audit_key = key.derive("fluxforge audit chain v1").unwrap();
        let auth = Authenticator::new(vec![key], "fluxforge", "fluxforge");
        let jobs = Jobs::new(store.clone(), JobsConfig::default());
        let mut state = AppState::new(
            "test-node".into(),
            store,
            jobs,
            auth,
            metrics,
            audit_key,
            None,
        );
        set(&mut state);
        let state = Arc::new(state);
        let limits = ApiLimits {
            max_body_bytes: 1024 * 1024,
            max_restore_bytes: 1024 * 1024,
            max_requests: 8,
            max_long_polls: 8,
            max_registrations: 8,
            max_agent_requests: 8,
            shares: crate::middleware::limits::Shares {
                tenant_percent: 50,
                token_percent: 25,
            },
            body_read_timeout: Duration::from_secs(10),
        };
        (app(state.clone(), &limits), state)
    }

    fn token(st: &AppState, tenant: &str, role: flux_core::auth::Role) -> String {
        st.auth
            .issue(
                "t",
                tenant,
                role,
                Duration::from_secs(60),
                (role == flux_core::auth::Role::Agent).then_some("a1"),
            )
            .unwrap()
            .0
    }

    /// Store operations done so far, of every kind.
    fn store_ops(st: &AppState) -> u64 {
        use prometheus::core::Collector;
        st.metrics
            .store_ops
            .collect()
            .iter()
            .flat_map(|f| f.get_metric())
            .map(|m| m.get_histogram().get_sample_count())
            .sum()
    }

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::get(path).body(Body::empty()).unwrap();
        let resp = app.oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn healthz_answers_and_unknown_routes_get_the_json_404() {
        let dir = tempfile::tempdir().unwrap();
        let app = test_app(dir.path()).await;
        let (status, body) = call(app.clone(), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, serde_json::json!({"status": "ok"}));
        let (status, body) = call(app, "/v1/no-such-route").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "not_found", "message": "no such route"}})
        );
    }

    #[tokio::test]
    async fn metrics_are_served_as_prometheus_text_with_known_series_at_zero() {
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = test_app_and_state(dir.path()).await;
        let req = Request::get("/metrics")
            .header(
                "authorization",
                format!(
                    "Bearer {}",
                    token(&st, "default", flux_core::auth::Role::Viewer)
                ),
            )
            .body(Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4");
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        for line in [
            "flux_jobs_finished_total{status=\"succeeded\"} 0",
            "flux_backups_total{result=\"error\"} 0",
            "flux_leader_status 0",
            "# HELP flux_dispatch_latency_seconds from a job's submission to its process starting on an agent (finished jobs)",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }

    async fn scrape(app: &Router, token: Option<&str>) -> StatusCode {
        let mut req = Request::get("/metrics");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        resp.status()
    }

    #[tokio::test]
    async fn metrics_need_a_reading_token_of_the_cluster_tenant() {
        use flux_core::auth::Role;
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = test_app_and_state(dir.path()).await;
        assert_eq!(scrape(&app, None).await, StatusCode::UNAUTHORIZED);
        assert_eq!(
            scrape(&app, Some("garbage")).await,
            StatusCode::UNAUTHORIZED
        );
        for (tenant, role) in [("acme", Role::Admin), ("default", Role::Agent)] {
            let t = token(&st, tenant, role);
            assert_eq!(
                scrape(&app, Some(&t)).await,
                StatusCode::FORBIDDEN,
                "{tenant} {role}"
            );
        }
        for role in [Role::Viewer, Role::Operator, Role::Admin] {
            let t = token(&st, "default", role);
            assert_eq!(scrape(&app, Some(&t)).await, StatusCode::OK, "{role}");
        }
    }

    #[tokio::test]
    async fn a_scrape_reads_nothing_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = test_app_and_state(dir.path()).await;
        let t = token(&st, "default", flux_core::auth::Role::Viewer);
        // Something for a scan to find: a tenant with a queued job.
        st.jobs
            .submit(
                "default",
                "t",
                serde_json::from_value(serde_json::json!({"command": "true"})).unwrap(),
                flux_core::model::now_ms(),
            )
            .await
            .unwrap();
        assert_eq!(scrape(&app, Some(&t)).await, StatusCode::OK);
        // Authentication reads the revocation list; the scrape itself nothing more.
        let before = store_ops(&st);
        for _ in 0..5 {
            assert_eq!(scrape(&app, Some(&t)).await, StatusCode::OK);
        }
        let per_scrape = (store_ops(&st) - before) / 5;
        assert!(per_scrape <= 1, "{per_scrape} store operations per scrape");
        // The gauges are the background task's: computed once, then rendered as they are.
        crate::tasks::gauges::refresh_gauges(&st).await.unwrap();
        assert_eq!(st.metrics.queue_depth.get(), 1);
    }

    #[tokio::test]
    async fn the_metrics_listener_serves_only_metrics_without_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let (_, st) = test_app_and_state(dir.path()).await;
        let app = metrics_app(st.metrics.clone());
        assert_eq!(scrape(&app, None).await, StatusCode::OK);
        let req = Request::get("/v1/jobs").body(Body::empty()).unwrap();
        assert_eq!(
            app.oneshot(req).await.unwrap().status(),
            StatusCode::NOT_FOUND
        );
    }

    async fn submit(app: &Router, token: &str) -> (StatusCode, Option<String>, serde_json::Value) {
        post(
            app,
            token,
            "/v1/jobs",
            serde_json::json!({"command": "true"}),
        )
        .await
    }

    /// POSTs `body` to `path`: the status, the Retry-After header and the reply.
    async fn post(
        app: &Router,
        token: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (StatusCode, Option<String>, serde_json::Value) {
        let req = Request::post(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, retry, serde_json::from_slice(&bytes).unwrap())
    }

    /// An app whose admission refuses a tenant whose collector is behind for over a minute.
    async fn lagging_app(dir: &std::path::Path) -> (Router, Arc<AppState>) {
        test_app_and_state_with(dir, |s| {
            s.gc_max_lag = Some(Duration::from_secs(60));
        })
        .await
    }

    /// POSTs `body` to `path` until it is accepted (202), within 10 s: the node's cached view
    /// of the collector may be up to a second old. Every refusal before must be a 429.
    async fn post_once_admitted(app: &Router, token: &str, path: &str, body: serde_json::Value) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let (status, _, reply) = post(app, token, path, body.clone()).await;
            if status == StatusCode::ACCEPTED {
                return;
            }
            assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{reply}");
            assert!(std::time::Instant::now() < deadline, "still refused");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn set_behind_since(st: &AppState, tenant: &str, since: Option<u64>) {
        let k = flux_core::store::Key::new(tenant, flux_core::keys::GC_STATE).unwrap();
        let prev = st.store.get(&k).await.unwrap();
        let rec = flux_core::retention::GcState {
            behind_since: since,
            ..Default::default()
        };
        let expect = prev.map_or(flux_core::store::Expect::Absent, |v| {
            flux_core::store::Expect::Version(v.version)
        });
        st.store
            .put(k, serde_json::to_vec(&rec).unwrap(), expect)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn submissions_wait_while_the_tenants_collector_is_behind() {
        use flux_core::auth::Role;
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = lagging_app(dir.path()).await;
        let late = token(&st, "default", Role::Operator);
        let other = token(&st, "globex", Role::Operator);
        // Behind for two minutes: refused, with the reason and when to retry; nothing written.
        let now = flux_core::model::now_ms();
        set_behind_since(&st, "default", Some(now - 120_000)).await;
        let (status, retry, body) = submit(&app, &late).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "collection_behind", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("--gc-max-lag") && msg.contains("120s"),
            "{msg}"
        );
        assert_eq!(retry.as_deref(), Some("5"));
        assert_eq!(st.jobs.queue_depth("default").await.unwrap(), 0);
        assert_eq!(st.metrics.gc_backlog_refusals.get(), 1);
        // Another tenant, whose collector keeps up, is admitted.
        let (status, _, body) = submit(&app, &other).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        // Caught up (seen within the cache's age): admitted again.
        set_behind_since(&st, "default", None).await;
        let job = serde_json::json!({"command": "true"});
        post_once_admitted(&app, &late, "/v1/jobs", job).await;
        assert_eq!(st.jobs.queue_depth("default").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn fan_outs_schedule_triggers_and_rollouts_wait_too_and_write_nothing() {
        use flux_core::auth::Role;
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = lagging_app(dir.path()).await;
        let now = flux_core::model::now_ms();
        let req = flux_core::model::RegisterAgent {
            labels: [("role".to_string(), "web".to_string())].into(),
            ..Default::default()
        };
        let a1 = flux_core::jobs::AgentCaller::new("a1", None);
        st.jobs.register("default", a1, &req, now).await.unwrap();
        let t = token(&st, "default", Role::Admin);
        let fan_out =
            serde_json::json!({"command": "true", "selector": "role=web", "fan_out": true});
        let schedule = serde_json::json!({
            "name": "nightly",
            "cron": "30 2 * * *",
            "what": {"job": {"command": "true", "node_id": "a1"}},
        });
        let (status, _, body) = post(&app, &t, "/v1/schedules", schedule).await;
        assert!(status.is_success(), "{status} {body}");
        set_behind_since(&st, "default", Some(now - 120_000)).await;
        let (status, retry, body) = post(&app, &t, "/v1/jobs", fan_out.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "collection_behind", "{body}");
        assert_eq!(retry.as_deref(), Some("5"));
        let trigger = "/v1/schedules/nightly/trigger";
        let (status, _, body) = post(&app, &t, trigger, serde_json::json!({})).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "collection_behind", "{body}");
        let rollout = serde_json::json!({"command": "true", "selector": "role=web"});
        let (status, _, body) = post(&app, &t, "/v1/rollouts", rollout.clone()).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(body["error"]["code"], "collection_behind", "{body}");
        let rollouts = flux_core::rollout::Rollouts::new(st.store.clone(), st.jobs.clone());
        let (listed, _) = rollouts.list("default", 10, None).await.unwrap();
        assert!(listed.is_empty(), "{listed:?}");
        assert_eq!(st.jobs.queue_depth("default").await.unwrap(), 0);
        let view = st.schedules.get("default", "nightly").await.unwrap();
        assert!(view.runs.is_empty() && view.fires == 0, "{:?}", view.runs);
        assert_eq!(st.metrics.gc_backlog_refusals.get(), 3);
        // Caught up: the fan-out makes its job, the trigger its run and the rollout itself.
        set_behind_since(&st, "default", None).await;
        post_once_admitted(&app, &t, "/v1/jobs", fan_out).await;
        let (status, _, body) = post(&app, &t, trigger, serde_json::json!({})).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(st.jobs.queue_depth("default").await.unwrap(), 2);
        let (status, _, body) = post(&app, &t, "/v1/rollouts", rollout).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_eq!(rollouts.list("default", 10, None).await.unwrap().0.len(), 1);
    }

    #[tokio::test]
    async fn without_a_maximum_lag_a_late_collector_refuses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (app, st) = test_app_and_state(dir.path()).await;
        set_behind_since(&st, "default", Some(0)).await;
        let t = token(&st, "default", flux_core::auth::Role::Operator);
        let (status, _, body) = submit(&app, &t).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    }
}
