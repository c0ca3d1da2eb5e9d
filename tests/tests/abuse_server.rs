//! The server against abusive or unlucky clients, on real fluxd processes: open log follows end
//! when their token is revoked or expires and at `--max-follow`; a half-sent request after the
//! TLS handshake is closed within `--header-read-timeout`; one address cannot hold more than
//! `--max-connections-per-ip` connections while others still get in; the soft descriptor limit
//! is raised at start; and every refusal (401, 403, 413, 415, 429) reaches the real `curl`
//! over HTTP/2 and HTTP/1.1 alike.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flux_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A job that stays queued for ever: its node does not exist, so a follow of it never ends
/// by itself.
async fn queued_forever(d: &Fluxd) -> String {
    d.submit(
        &d.admin,
        &json!({"command": "true", "node_id": "nowhere", "allow_unknown_node": true}),
    )
    .await
}

/// Opens a follow of `job` with `token` (status 200 checked), `jsonl` or text.
async fn open_follow(d: &Fluxd, token: &str, job: &str, jsonl: bool) -> reqwest::Response {
    let fmt = if jsonl { "&format=jsonl" } else { "" };
    let resp = d
        .logs_response(token, job, &format!("follow=true{fmt}"))
        .await;
    assert_eq!(resp.status(), 200);
    resp
}

/// Reads `resp` until its end or `limit`: the text read and when it ended (`None`: it had not
/// ended by `limit`).
async fn read_to_end(mut resp: reqwest::Response, limit: Duration) -> (String, Option<Instant>) {
    let deadline = tokio::time::Instant::now() + limit;
    let mut text = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Err(_) => return (String::from_utf8_lossy(&text).into(), None),
            Ok(Ok(Some(c))) => text.extend_from_slice(&c),
            Ok(Ok(None)) | Ok(Err(_)) => {
                return (String::from_utf8_lossy(&text).into(), Some(Instant::now()));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_follow_ends_within_seconds_of_its_token_being_revoked() {
    let d = Fluxd::start().await;
    let job = queued_forever(&d).await;
    let v = d
        .admin_post_expect(
            "/v1/tokens",
            &json!({"tenant": "default", "role": "viewer", "ttl_secs": 3600}),
            201,
        )
        .await;
    let token = v["token"].as_str().unwrap().to_string();
    let text_follow = open_follow(&d, &token, &job, false).await;
    let jsonl_follow = open_follow(&d, &token, &job, true).await;

    let (s, v) = d
        .post("/v1/tokens/revoke", &d.admin, &json!({"token": token}))
        .await;
    assert_eq!(s, 200, "{v}");
    let revoked_at = Instant::now();
    assert_eq!(d.get("/v1/whoami", &token).await.0, 401);

    let limit = Duration::from_secs(15);
    let ((text, text_end), (jsonl, jsonl_end)) = tokio::join!(
        read_to_end(text_follow, limit),
        read_to_end(jsonl_follow, limit)
    );
    for (end, what) in [(text_end, "text"), (jsonl_end, "jsonl")] {
        let end = end.unwrap_or_else(|| {
            panic!("the {what} follow still streams {limit:?} after revocation")
        });
        assert!(
            end - revoked_at < Duration::from_secs(8),
            "the {what} follow ended {:?} after revocation",
            end - revoked_at
        );
    }
    assert!(
        text.trim_end()
            .ends_with("[fluxforge: stream ended: the token has been revoked]"),
        "{text:?}"
    );
    let last: Value = serde_json::from_str(jsonl.trim_end().lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "unauthorized", "{jsonl}");
    assert!(error_message(&last).contains("revoked"), "{jsonl}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_follow_ends_when_its_token_expires() {
    let d = Fluxd::start().await;
    let job = queued_forever(&d).await;
    let (s, v) = d
        .post(
            "/v1/tokens",
            &d.admin,
            &json!({"tenant": "default", "role": "viewer", "ttl_secs": 3}),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let issued = Instant::now();
    let follow = open_follow(&d, &token, &job, false).await;
    let (text, end) = read_to_end(follow, Duration::from_secs(20)).await;
    let end = end.expect("the follow still streams 20 s after its 3 s token expired");
    // Expiry is second-grained: at most 4 s, plus one re-check interval and a margin.
    assert!(end - issued < Duration::from_secs(10), "{:?}", end - issued);
    assert!(
        text.trim_end()
            .ends_with("[fluxforge: stream ended: the token has expired]"),
        "{text:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follow_ends_at_max_follow_with_a_line_asking_to_reconnect() {
    let d = Fluxd::start_args(&["--max-follow", "2s"]).await;
    let job = queued_forever(&d).await;
    let started = Instant::now();
    let follow = open_follow(&d, &d.admin, &job, true).await;
    let (text, end) = read_to_end(follow, Duration::from_secs(20)).await;
    let end = end.expect("the follow outlived --max-follow");
    let took = end - started;
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    let last: Value = serde_json::from_str(text.trim_end().lines().last().unwrap()).unwrap();
    assert_eq!(last["reconnect"], true, "{text}");
    assert!(
        last["note"].as_str().unwrap().contains("reconnect"),
        "{text}"
    );
    // A new follow is accepted at once.
    let again = open_follow(&d, &d.admin, &job, true).await;
    drop(again);
}

fn tls_connector(ca: &Path, alpn: &[u8]) -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(cfg))
}

/// A TCP connection to `d` from the loopback address `from`.
async fn tcp_from(d: &Fluxd, from: &str) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(format!("{from}:0").parse().unwrap())?;
    let to: SocketAddr = format!("127.0.0.1:{}", d.port).parse().unwrap();
    sock.connect(to).await
}

/// A TLS connection to `d` from `from`, handshake done.
async fn tls_from(d: &Fluxd, from: &str, alpn: &[u8]) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(d, from).await?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tls_connector(&d.ca_path(), alpn).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// How long until the server closes `conn` (reading what it sends), `None` if it has not
/// within `limit`.
async fn closed_within(conn: &mut TlsStream<TcpStream>, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    let r = tokio::time::timeout(limit, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| started.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_sent_request_after_the_tls_handshake_is_closed_within_the_header_timeout() {
    // The default header timeout (10 s).
    let d = Fluxd::start().await;
    // HTTP/1.1: headers begun, never finished.
    let mut h1 = Vec::new();
    for _ in 0..20 {
        let mut c = tls_from(&d, "127.0.0.1", b"http/1.1").await.unwrap();
        c.write_all(b"GET /v1/whoami HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        c.flush().await.unwrap();
        h1.push(c);
    }
    // HTTP/2: the preface and settings, then no request at all.
    let mut h2 = tls_from(&d, "127.0.0.1", b"h2").await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    h2.flush().await.unwrap();
    // A real request meanwhile is served.
    assert_eq!(d.get("/v1/whoami", &d.admin).await.0, 200);

    let limit = Duration::from_secs(30);
    let started = Instant::now();
    for c in h1.iter_mut().chain(std::iter::once(&mut h2)) {
        closed_within(c, limit)
            .await
            .unwrap_or_else(|| panic!("a half-sent request was still open after {limit:?}"));
    }
    // Closed at the 10 s header timeout (counted from each handshake), with a margin.
    let took = started.elapsed();
    assert!(took < Duration::from_secs(18), "all closed after {took:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_is_held_to_its_connection_cap_while_others_are_served() {
    let d = Fluxd::start_args(&["--max-connections-per-ip", "4"]).await;
    // 127.0.0.3 takes its 4 connections (TLS done: they were admitted).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_from(&d, "127.0.0.3", b"http/1.1").await.unwrap());
    }
    // The fifth is closed before its handshake.
    for _ in 0..3 {
        assert!(
            tls_from(&d, "127.0.0.3", b"http/1.1").await.is_err(),
            "a connection over the per-address cap was admitted"
        );
    }
    // Another address is served meanwhile.
    assert_eq!(d.get("/v1/whoami", &d.admin).await.0, 200);
    // A place freed is usable again.
    drop(held.pop());
    let again = eventually(
        "a freed place to be reusable",
        Duration::from_secs(10),
        || async { tls_from(&d, "127.0.0.3", b"http/1.1").await.ok() },
    )
    .await;
    held.push(again);
    assert!(tls_from(&d, "127.0.0.3", b"http/1.1").await.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_soft_descriptor_limit_is_raised_to_the_hard_one_at_start() {
    let limits = |pid: &str| -> Option<(u64, u64)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut f = line.split_whitespace().skip(3);
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    };
    let (_, hard) = limits("self").unwrap();
    if hard <= 256 {
        eprintln!("hard descriptor limit {hard}: nothing to raise, skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -Sn 256 && exec \"$0\" \"$@\"")
        .arg(bin("fluxd"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--node-id")
        .arg("nofile");
    let p = Proc::spawn("fluxd", cmd, dir.path().join("fluxd.log")).unwrap();
    let pid = p.pid().to_string();
    eventually(
        "fluxd to raise its soft limit",
        Duration::from_secs(20),
        || {
            let pid = pid.clone();
            async move {
                // Once sh has lowered the limit and become fluxd.
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
                if comm.trim() != "fluxd" {
                    return None;
                }
                let (soft, h) = limits(&pid)?;
                (soft == h && soft > 256).then_some(())
            }
        },
    )
    .await;
}

/// The status `curl` reports (`000`: no response at all).
fn curl_status(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .output()
        .expect("run curl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_reaches_curl_over_http2_and_http1() {
    if tool("curl", "FLUX_REQUIRE_CURL").is_none() {
        return;
    }
    let d = Fluxd::start().await;
    let tiny = Fluxd::start_args(&["--max-registrations", "0"]).await;
    let viewer = d.token("default", "viewer", None).await;
    let agent = tiny.token("default", "agent", Some("a1")).await;
    let dir = tempfile::tempdir().unwrap();
    // Bodies larger than one HTTP/2 flow-control window, so that they are still being sent
    // when the refusal is.
    let padded_job = |name: &str, kib: usize| {
        let path = dir.path().join(name);
        let pad = "x".repeat(kib * 1024);
        std::fs::write(
            &path,
            json!({"command": format!("true # {pad}")}).to_string(),
        )
        .unwrap();
        path
    };
    let job = padded_job("job.json", 200);
    let big = padded_job("big.json", 1536);
    let reg = dir.path().join("reg.json");
    std::fs::write(
        &reg,
        json!({"hostname": "x".repeat(200 * 1024)}).to_string(),
    )
    .unwrap();
    let at = |p: &Path| format!("@{}", p.display());
    let (job, big, reg) = (at(&job), at(&big), at(&reg));
    let (ca, tiny_ca) = (
        d.ca_path().display().to_string(),
        tiny.ca_path().display().to_string(),
    );
    let bearer = |t: &str| format!("Authorization: Bearer {t}");
    let jobs_url = format!("{}/v1/jobs", d.url);
    let reg_url = format!("{}/v1/agent/register", tiny.url);
    let json_type = "Content-Type: application/json";
    let (bad, view, admin, agent) = (
        bearer("not-a-token"),
        bearer(&viewer),
        bearer(&d.admin),
        bearer(&agent),
    );
    let cases: Vec<(&str, Vec<&str>)> = vec![
        (
            "401",
            vec![
                "--cacert",
                &ca,
                "-H",
                &bad,
                "-H",
                json_type,
                "--data-binary",
                &job,
                &jobs_url,
            ],
        ),
        (
            "403",
            vec![
                "--cacert",
                &ca,
                "-H",
                &view,
                "-H",
                json_type,
                "--data-binary",
                &job,
                &jobs_url,
            ],
        ),
        (
            "413",
            vec![
                "--cacert",
                &ca,
                "-H",
                &admin,
                "-H",
                json_type,
                "--data-binary",
                &big,
                &jobs_url,
            ],
        ),
        // curl's -d sends a form, not JSON.
        (
            "415",
            vec!["--cacert", &ca, "-H", &admin, "-d", &job, &jobs_url],
        ),
        (
            "429",
            vec![
                "--cacert",
                &tiny_ca,
                "-H",
                &agent,
                "-H",
                json_type,
                "--data-binary",
                &reg,
                &reg_url,
            ],
        ),
    ];
    const TRIES: usize = 30;
    let mut missed = Vec::new();
    for (want, args) in &cases {
        for proto in ["--http2", "--http1.1"] {
            let mut seen = std::collections::BTreeMap::<String, usize>::new();
            for _ in 0..TRIES {
                let mut a = vec![proto];
                a.extend(args.iter().copied());
                *seen.entry(curl_status(&a)).or_default() += 1;
            }
            if seen.get(*want) != Some(&TRIES) {
                missed.push(format!("{want} over {proto}: {seen:?}"));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "curl did not always see the refusal: {missed:#?}"
    );
    // Nothing was submitted by any of them.
    let (_, jobs) = d.get("/v1/jobs", &d.admin).await;
    assert_eq!(jobs.as_array().map(Vec::len), Some(0), "{jobs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_need_a_cluster_token_on_the_api_and_none_on_the_metrics_listener() {
    let mport = free_port();
    let d = Fluxd::start_args(&["--metrics-listen", &format!("127.0.0.1:{mport}")]).await;
    let url = format!("{}/metrics", d.url);
    let anonymous = d.http.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let (s, v) = d
        .post("/v1/tenants", &d.admin, &json!({"name": "acme"}))
        .await;
    assert!(s == 201 || s == 200, "{s} {v}");
    let other_tenant = d.token("acme", "admin", None).await;
    assert_eq!(d.get("/metrics", &other_tenant).await.0, 403);
    let viewer = d.token("default", "viewer", None).await;
    let text = d.get_response("/metrics", &viewer).await;
    assert_eq!(text.status(), 200);
    assert!(text.text().await.unwrap().contains("\nflux_leader_status "));
    // The metrics listener: plain HTTP, no token, only /metrics.
    let plain = reqwest::Client::new();
    let plain_get = |path: &str| plain.get(format!("http://127.0.0.1:{mport}{path}")).send();
    let m = plain_get("/metrics").await.unwrap();
    assert_eq!(m.status(), 200);
    assert!(m.text().await.unwrap().contains("\nflux_leader_status "));
    let other = plain_get("/v1/jobs").await.unwrap();
    assert_eq!(other.status(), 404);
}

/// An HTTP/2 client from `from` that answers the server's keep-alive pings and sends its own
/// while idle, as a well-behaved long-lived client would.
fn h2_client_from(d: &Fluxd, from: &str) -> reqwest::Client {
    let ca = std::fs::read(d.ca_path()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .local_address(from.parse::<std::net::IpAddr>().unwrap())
        .http2_prior_knowledge()
        .http2_keep_alive_interval(Duration::from_millis(300))
        .http2_keep_alive_while_idle(true)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET path` on `d` through `client`, as the admin.
async fn admin_get(
    client: &reqwest::Client,
    d: &Fluxd,
    path: &str,
) -> reqwest::Result<reqwest::Response> {
    client
        .get(format!("{}{path}", d.url))
        .bearer_auth(&d.admin)
        .send()
        .await
}

/// Keep-alive pings do not hold a connection open: an HTTP/2 connection with no request in
/// flight for `--idle-timeout` is closed (its place under the per-address cap freed), while a
/// request that takes longer than the timeout (a job wait) is in flight throughout and is
/// answered.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_though_it_answers_pings() {
    let d = Fluxd::start_args(&["--idle-timeout", "2s", "--max-connections-per-ip", "1"]).await;
    let job = queued_forever(&d).await;
    // A wait of 4 s on one connection: twice the idle timeout, answered (the job is still
    // queued, so the answer is the job as it is).
    let waiter = h2_client_from(&d, "127.0.0.8");
    let resp = admin_get(&waiter, &d, &format!("/v1/jobs/{job}/wait?timeout_secs=4"))
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["job_id"], job.as_str(), "{body}");

    // An idle connection that pings and answers pings holds the address's only place...
    let idle = h2_client_from(&d, "127.0.0.7");
    let resp = admin_get(&idle, &d, "/v1/whoami").await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    assert!(
        tls_from(&d, "127.0.0.7", b"h2").await.is_err(),
        "the per-address cap did not hold"
    );
    // ...until the server closes it for being idle.
    let freed = eventually(
        "the idle connection to be closed",
        Duration::from_secs(20),
        || async { tls_from(&d, "127.0.0.7", b"h2").await.ok() },
    )
    .await;
    drop(freed);
    // The client reconnects for its next request.
    eventually(
        "the client to reconnect",
        Duration::from_secs(10),
        || async {
            let r = admin_get(&idle, &d, "/v1/whoami").await.ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    drop(waiter);
}
