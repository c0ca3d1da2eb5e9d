//! The chaos run's webhook receiver: a plain HTTP server on loopback (the run's webhook allows
//! `http://` and the nodes `--webhook-allow-private`) that answers 200 to every delivery and
//! records its delivery id, event id and object, and whether its signature verified.
//!
//! Guarantees: a delivery is recorded before it is answered (so the leader moves the cursor
//! only past what was recorded); each request is bounded in size and time; the server lives
//! in `fluxctl`, out of reach of the faults.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_core::chaos::Receipt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::AbortOnDropHandle;

/// Longest request read.
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
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(READ_TIMEOUT, serve(tcp, &sink, &secret)).await;
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

async fn serve(mut tcp: TcpStream, sink: &Mutex<Vec<Receipt>>, secret: &str) -> Option<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_REQUEST {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    if len > MAX_REQUEST {
        return None;
    }
    while buf.len() < head_end + len {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = &buf[head_end..head_end + len];
    let delivery_id = headers.get("x-flux-delivery")?.clone();
    let ts: u64 = headers.get("x-flux-timestamp")?.parse().ok()?;
    let signed = headers
        .get("x-flux-signature")
        .is_some_and(|s| *s == flux_core::webhooks::signature(secret, &delivery_id, ts, body));
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    // A `webhook.dropped` notice reports events lost to the log's bounds; it is no delivery
    // of an event, so it is answered but not recorded.
    if v["event"]["type"] != "webhook.dropped" {
        sink.lock().expect("receiver lock").push(Receipt {
            delivery_id,
            event_id: v["event"]["id"].as_str().unwrap_or_default().to_string(),
            object: v["event"]["object"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            signed,
        });
    }
    tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .await
        .ok()?;
    tcp.shutdown().await.ok()
}
