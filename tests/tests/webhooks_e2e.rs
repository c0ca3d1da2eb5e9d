//! Webhooks end to end: a real HTTPS receiver started by the test (TLS with a certificate of the
//! test's CA, given to the webhook as its `ca_pem`), down for a while, and the leader killed with
//! SIGKILL after changes were committed and before they were delivered. Every event arrives at
//! least once, every signature verifies, a re-delivery carries the same delivery id, and first
//! deliveries come in log order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flux_core::testing::receiver::{self, Received};
use flux_tests::*;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const T: Duration = Duration::from_secs(90);
const SECRET: &str = "a-test-secret-of-enough-length";

/// A small HTTPS server answering 200 to every request and keeping what it got.
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    task: Option<tokio::task::JoinHandle<()>>,
    port: u16,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn acceptor(cert: &std::path::Path, key: &std::path::Path) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
}

async fn serve_one(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    got: Arc<Mutex<Vec<Received>>>,
) -> Option<()> {
    let tls = acceptor.accept(tcp).await.ok()?;
    let take = move |r| {
        got.lock().unwrap().push(r);
        true
    };
    receiver::serve(tls, 1 << 20, take).await.ok()
}

impl Receiver {
    async fn start(d: &Fluxd) -> Receiver {
        let tls = d.data_dir().join("tls");
        let mut r = Receiver {
            got: Arc::new(Mutex::new(Vec::new())),
            task: None,
            port: 0,
            acceptor: acceptor(&tls.join("server.crt"), &tls.join("server.key")),
        };
        r.up().await;
        r
    }

    async fn up(&mut self) {
        let l = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.port = l.local_addr().unwrap().port();
        let (acceptor, got) = (self.acceptor.clone(), self.got.clone());
        self.task = Some(tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(serve_one(acceptor.clone(), tcp, got.clone()));
            }
        }));
    }

    fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Job ids of the events received.
    fn objects(&self) -> BTreeSet<String> {
        self.got()
            .iter()
            .map(|g| {
                let v: Value = serde_json::from_slice(&g.body).unwrap();
                v["event"]["object"].as_str().unwrap().to_string()
            })
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

fn hmac_hex(id: &str, ts: &str, body: &[u8]) -> String {
    // HMAC-SHA256 by hand over sha2, so the check does not share code with the server.
    use sha2::{Digest, Sha256};
    let mut key = SECRET.as_bytes().to_vec();
    key.resize(64, 0);
    let ipad: Vec<u8> = key.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = key.iter().map(|b| b ^ 0x5c).collect();
    let mut inner = Sha256::new();
    inner.update(&ipad);
    inner.update(format!("{id}.{ts}.").as_bytes());
    inner.update(body);
    let mut outer = Sha256::new();
    outer.update(&opad);
    outer.update(inner.finalize());
    hex::encode(outer.finalize())
}

async fn submit(d: &Fluxd, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let v = d
            .admin_job_expect(&json!({"command": format!("echo {i}"), "node_id": "nobody", "allow_unknown_node": true}), 202)
            .await;
        ids.push(v["job_id"].as_str().unwrap().to_string());
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_event_reaches_a_receiver_that_was_down_across_a_leader_killed_with_sigkill() {
    let mut args: Vec<&str> = vec!["--webhook-allow-private"];
    args.extend(flux_core::testing::FAST_LEASE_ARGS);
    let mut d = Fluxd::start_args(&args).await;
    let mut rx = Receiver::start(&d).await;
    let ca = std::fs::read_to_string(d.ca_path()).unwrap();
    let (s, v) = d
        .post(
            "/v1/webhooks",
            &d.admin,
            &json!({
                "name": "ci",
                "url": format!("https://127.0.0.1:{}/hook", rx.port),
                "events": ["job.submitted"],
                "secret": SECRET,
                "ca_pem": ca,
            }),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert!(
        v.get("secret").is_none(),
        "a given secret is not echoed: {v}"
    );
    let mut want: BTreeSet<String> = submit(&d, 5).await.into_iter().collect();
    eventually("the first deliveries", T, || async {
        (rx.objects() == want).then_some(())
    })
    .await;

    // The receiver goes down; changes are committed and the leader fails to deliver them.
    rx.down();
    want.extend(submit(&d, 5).await);
    // The position delivered up to when an attempt on the next event had failed: that event is
    // the one delivered after more than one attempt.
    let failed_after = eventually("a failed attempt recorded", T, || async {
        let (s, v) = d.get("/v1/webhooks/ci", &d.admin).await;
        (s == 200 && v["attempts"].as_u64().unwrap_or(0) >= 1)
            .then(|| v["delivered_to"].as_str().unwrap().to_string())
    })
    .await;
    // The leader dies before delivering them; a new one takes over.
    d.proc.kill9();
    d.start_again(&args).await;
    rx.up().await;
    want.extend(submit(&d, 5).await);
    eventually("every event delivered", T, || async {
        (rx.objects() == want).then_some(())
    })
    .await;

    let got = rx.got();
    let mut by_delivery: BTreeMap<String, String> = BTreeMap::new();
    let mut first_order = Vec::new();
    for g in &got {
        let id = g.headers["x-flux-delivery"].clone();
        let ts = g.headers["x-flux-timestamp"].clone();
        let sig = g.headers["x-flux-signature"].clone();
        assert_eq!(
            sig,
            format!("sha256={}", hmac_hex(&id, &ts, &g.body)),
            "bad signature"
        );
        let v: Value = serde_json::from_slice(&g.body).unwrap();
        assert_eq!(v["delivery_id"], id.as_str());
        assert_eq!(g.headers["x-flux-event"], "job.submitted");
        let event_id = v["event"]["id"].as_str().unwrap().to_string();
        // A re-delivery carries the same id as the first for the same event, and one id names
        // one event.
        match by_delivery.get(&id) {
            Some(e) => assert_eq!(*e, event_id, "one delivery id, two events"),
            None => {
                by_delivery.insert(id.clone(), event_id.clone());
                first_order.push(event_id);
            }
        }
    }
    let events: BTreeSet<&String> = by_delivery.values().collect();
    assert_eq!(
        events.len(),
        by_delivery.len(),
        "an event under two delivery ids"
    );
    assert_eq!(by_delivery.len(), want.len());
    let pos = |id: &str| {
        let (r, i) = id.split_once('.').unwrap();
        (r.parse::<u64>().unwrap(), i.parse::<u32>().unwrap())
    };
    for w in first_order.windows(2) {
        assert!(pos(&w[0]) < pos(&w[1]), "out of order: {first_order:?}");
    }
    // The webhook shows its deliveries. The receiver keeps a request before it answers, and the
    // leader writes the cursor and the record only once it has the answer (in one transaction):
    // the listing is read once the cursor is past the last event received, so it must hold a
    // record of every delivery.
    let last = by_delivery
        .values()
        .max_by_key(|e| pos(e))
        .expect("deliveries")
        .clone();
    let v = eventually("the cursor past the last event received", T, || async {
        let (s, v) = d.get("/v1/webhooks/ci", &d.admin).await;
        (s == 200 && pos(v["delivered_to"].as_str().unwrap_or("0.0")) >= pos(&last)).then_some(v)
    })
    .await;
    assert!(v.get("secret").is_none());
    let ds = v["deliveries"].as_array().unwrap();
    // Every delivered event has exactly one record, under its delivery id, delivered; the
    // event that was being retried when the receiver went down took more than one attempt,
    // every other one took one.
    let mut recorded: BTreeMap<String, &Value> = BTreeMap::new();
    for r in ds {
        let id = r["delivery_id"].as_str().unwrap().to_string();
        assert!(
            recorded.insert(id, r).is_none(),
            "two records of one delivery: {v}"
        );
    }
    assert_eq!(
        recorded.keys().collect::<BTreeSet<_>>(),
        by_delivery.keys().collect::<BTreeSet<_>>(),
        "the records are not those of the deliveries: {v}"
    );
    let retried = recorded
        .values()
        .map(|r| r["event_id"].as_str().unwrap())
        .filter(|e| pos(e) > pos(&failed_after))
        .min_by_key(|e| pos(e))
        .expect("an event after the failed attempt")
        .to_string();
    for (id, r) in &recorded {
        assert_eq!(r["event_id"], by_delivery[id].as_str(), "{v}");
        assert_eq!(r["type"], "job.submitted", "{v}");
        assert_eq!(r["status"], "delivered", "{v}");
        assert_eq!(r["response_code"], 200, "{v}");
        let attempts = r["attempts"].as_u64().unwrap();
        if r["event_id"] == retried.as_str() {
            assert!(attempts >= 2, "the retried event: {v}");
        } else {
            assert_eq!(attempts, 1, "{v}");
        }
    }
    let m = d
        .metric("flux_webhook_deliveries_total{result=\"delivered\"}")
        .await;
    assert!(m.unwrap_or(0.0) >= 1.0, "{m:?}");
}

/// Without `--webhook-allow-private`, loopback and private targets are refused; plain http is
/// refused unless allowed; unknown event types 422; the secret is generated and shown once.
#[tokio::test(flavor = "multi_thread")]
async fn webhooks_refuse_internal_targets_plain_http_and_unknown_types() {
    let d = Fluxd::start().await;
    let cases = [
        (json!({"name": "a", "url": "https://127.0.0.1:9/x"}), "url"),
        (json!({"name": "a", "url": "https://10.0.0.8/x"}), "url"),
        (json!({"name": "a", "url": "https://[::1]/x"}), "url"),
        (
            json!({"name": "a", "url": "https://169.254.169.254/x"}),
            "url",
        ),
        (
            json!({"name": "a", "url": "http://hooks.example.com/x"}),
            "url",
        ),
        (
            json!({"name": "a", "url": "https://hooks.example.com/x", "events": ["job.exploded"]}),
            "type",
        ),
        (
            json!({"name": "Bad Name", "url": "https://hooks.example.com/x"}),
            "name",
        ),
    ];
    for (body, field) in cases {
        let (s, v) = d.post("/v1/webhooks", &d.admin, &body).await;
        assert_eq!(s, 422, "{body}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{body}: {v}"
        );
    }
    let (s, v) = d
        .post(
            "/v1/webhooks",
            &d.admin,
            &json!({"name": "a", "url": "https://hooks.example.com/x", "bogus": 1}),
        )
        .await;
    assert!(s == 400 || s == 422, "{v}");
    let v = create_webhook(
        &d,
        &json!({"name": "plain", "url": "http://hooks.example.com/x", "allow_http": true}),
    )
    .await;
    assert_eq!(v["secret"].as_str().map(str::len), Some(64), "{v}");
    let (s, v) = d.get("/v1/webhooks/plain", &d.admin).await;
    assert_eq!(s, 200);
    assert!(v.get("secret").is_none(), "{v}");
    let viewer = d.token("default", "viewer", None).await;
    let (s, _) = d.get("/v1/webhooks", &viewer).await;
    assert_eq!(s, 403);
    let acme = d.token("acme", "admin", None).await;
    let (s, _) = d.get("/v1/webhooks/plain", &acme).await;
    assert_eq!(s, 404, "another tenant's webhook");
    let (s, _) = send(d.req(reqwest::Method::DELETE, "/v1/webhooks/plain", &d.admin)).await;
    assert_eq!(s, 204);
    let (s, _) = d.get("/v1/webhooks/plain", &d.admin).await;
    assert_eq!(s, 404);

    // The same through fluxctl.
    let secret = d.dir.path().join("hook.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let secret = secret.display().to_string();
    let out = d.fluxctl(
        &d.admin,
        &[
            "webhooks",
            "create",
            "ops",
            "--url",
            "https://hooks.example.com/x",
            "--events",
            "job.finished,state.*",
            "--secret-file",
            &secret,
        ],
    );
    ok(&out).unwrap();
    let out = d.fluxctl(&d.admin, &["webhooks", "list", "-o", "json"]);
    let list = json_of(&out);
    assert_eq!(list[0]["name"], "ops");
    assert_eq!(list[0]["events"], json!(["job.finished", "state.*"]));
    let out = d.fluxctl(&d.admin, &["webhooks", "get", "ops"]);
    assert!(ok(&out).unwrap().contains("hooks.example.com"));
    let out = d.fluxctl(
        &d.admin,
        &[
            "webhooks",
            "create",
            "bad",
            "--url",
            "http://hooks.example.com/x",
        ],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("http"), "{}", stderr(&out));
    ok(&d.fluxctl(&d.admin, &["webhooks", "delete", "ops"])).unwrap();
    let out = d.fluxctl(&d.admin, &["webhooks", "get", "ops"]);
    assert!(!out.status.success());
}

/// Creates the webhook `body` as the admin (answered 201); returns the answer.
async fn create_webhook(d: &Fluxd, body: &Value) -> Value {
    d.admin_post_expect("/v1/webhooks", body, 201).await
}

/// A webhook is part of a backup: deleted after it, a forced restore brings it back with its
/// identity (so its delivery ids stay the same) and its cursor.
#[tokio::test(flavor = "multi_thread")]
async fn a_restore_brings_webhooks_back() {
    let d = Fluxd::start().await;
    let v = create_webhook(
        &d,
        &json!({"name": "kept", "url": "https://hooks.example.com/x", "secret": SECRET}),
    )
    .await;
    let id = v["id"].as_str().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.backup");
    ok(&d.fluxctl(&d.admin, &["backup", "create", file.to_str().unwrap()])).unwrap();
    ok(&d.fluxctl(&d.admin, &["webhooks", "delete", "kept"])).unwrap();
    assert_eq!(d.get("/v1/webhooks/kept", &d.admin).await.0, 404);
    ok(&d.fluxctl(
        &d.admin,
        &["backup", "restore", file.to_str().unwrap(), "--force"],
    ))
    .unwrap();
    let (s, v) = d.get("/v1/webhooks/kept", &d.admin).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["id"], id.as_str());
    assert!(v.get("secret").is_none());
}
