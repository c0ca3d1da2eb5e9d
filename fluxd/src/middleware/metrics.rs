//! RED metrics per matched route: `flux_http_requests_total{route,method,status}` and
//! `flux_http_request_duration_seconds{route,method}`. The layer takes only the metrics
//! registry, not the whole node state.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::Metrics;

/// Records RED metrics per matched route.
pub fn track(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> impl Future<Output = Response> + Send + 'static {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    // Only standard methods become label values: arbitrary ones would each add series.
    let method: &'static str = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    };
    let started = Instant::now();
    let answer = super::forward(next, req);
    async move {
        let resp = answer.await;
        metrics
            .http_duration
            .with_label_values(&[route.as_str(), method])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .http_requests
            .with_label_values(&[route.as_str(), method, resp.status().as_str()])
            .inc();
        resp
    }
}
