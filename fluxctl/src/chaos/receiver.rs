//! The chaos run's webhook receiver: a plain HTTP server on loopback (the run's webhook allows
//! `http://` and the nodes `--webhook-allow-private`), built on
//! [`flux_core::testing::receiver`], that answers 200 to every delivery and records its
//! delivery id, event id and object, and whether its signature verified.
//!
//! Guarantees: a delivery is recorded before it is answered (so the leader moves the cursor
//! only past what was recorded); each request is bounded in size and time; the server lives
//! in `fluxctl`, out of reach of the faults.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_core::chaos::Receipt;
use flux_core::testing::receiver::{Received, serve};
use tokio::net::TcpListener;
use tokio_util::task::AbortOnDropHandle;

/// Longest request body read.
const MAX_REQUEST: usize = 1 << 20;
/// Longest one request may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) struct Receiver {
    pub(super) port: u16,
    got: Arc<Mutex<Vec<Receipt>>>,
    _task: AbortOnDropHandle<()>,
}

impl Receiver {
    /// Starts the server on a free loopback port; deliveries are checked against `secret`.
    pub(super) async fn start(secret: String) -> anyhow::Result<Receiver> {
        let l = TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = l.local_addr()?.port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let secret = Arc::new(secret);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (sink, secret) = (sink.clone(), secret.clone());
                let take = move |got| record(&sink, &secret, got);
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, serve(tcp, MAX_REQUEST, take)).await;
                });
            }
        });
        Ok(Receiver {
            port,
            got,
            _task: AbortOnDropHandle::new(task),
        })
    }

    /// What was received so far, in arrival order.
    pub(super) fn received(&self) -> Vec<Receipt> {
        self.got.lock().expect("receiver lock").clone()
    }
}

/// Records a delivery (`false`, answered 400, for a request that is not one).
fn record(sink: &Mutex<Vec<Receipt>>, secret: &str, got: Received) -> bool {
    let (Some(delivery_id), Some(ts)) = (
        got.header("x-flux-delivery"),
        got.header("x-flux-timestamp")
            .and_then(|t| t.parse::<u64>().ok()),
    ) else {
        return false;
    };
    let signed = got
        .header("x-flux-signature")
        .is_some_and(|s| s == flux_core::webhooks::signature(secret, delivery_id, ts, &got.body));
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&got.body) else {
        return false;
    };
    // A `webhook.dropped` notice reports events lost to the log's bounds; it is no delivery
    // of an event, so it is answered but not recorded.
    if v["event"]["type"] != "webhook.dropped" {
        sink.lock().expect("receiver lock").push(Receipt {
            delivery_id: delivery_id.to_string(),
            event_id: v["event"]["id"].as_str().unwrap_or_default().to_string(),
            object: v["event"]["object"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            signed,
        });
    }
    true
}
