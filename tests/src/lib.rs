//! End-to-end test harness for FluxForge: starts real `fluxd`, `flux-agent` and `redis-server`
//! processes on loopback and drives them through their public interfaces.
//!
//! The binaries are taken from the cargo target directory this test runs from (or from
//! `FLUX_BIN_DIR`). `cargo test --workspace` builds them because each binary crate has
//! integration tests of its own.
//!
//! The kill-on-drop child process ([`Proc`]), [`free_port`], [`tool`] and the fault proxy are
//! defined once in `flux_core::testing` and `flux_core::chaos` and re-exported here.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Result, bail};
use flux_core::testing::poll_until;
use serde_json::{Value, json};

pub use flux_core::chaos::faultproxy::FaultProxy;
pub use flux_core::testing::{Proc, free_port, pid_alive, tool};
pub use runs::{max_overlap, side_effects, single_runs};
pub use setup::{error_message, field_pairs, field_strs, find_by, json_of, send_text};
pub use tokens::{expired_token, forged_admin_token};

mod runs;
mod setup;
mod tokens;

/// Directory holding `fluxd`, `flux-agent` and `fluxctl`.
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("FLUX_BIN_DIR") {
        return d.into();
    }
    // target/<profile>/deps/<test-binary>
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} not found: build the binaries first (cargo test --workspace builds them)",
        p.display()
    );
    p
}

/// Polls `f` every 25 ms until it returns `Some`, or fails after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match poll_until(Duration::from_millis(25), timeout, f).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// One `fluxd` with its own data directory, port and generated CA.
pub struct Fluxd {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub url: String,
    pub http: reqwest::Client,
    pub admin: String,
    ca: PathBuf,
}

/// Options for [`Fluxd::start_with`].
#[derive(Default, Clone)]
pub struct FluxdOpts {
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// CA that signed the served certificate, when it is not the node's own generated CA.
    pub ca_file: Option<PathBuf>,
}

impl FluxdOpts {
    /// Fast liveness for tests that kill agents: unreachable after 1 s, dead after 2 s.
    pub fn fast_liveness() -> FluxdOpts {
        FluxdOpts {
            args: flux_core::testing::FAST_LIVENESS_ARGS
                .map(String::from)
                .to_vec(),
            ca_file: None,
        }
    }

    /// A node of a cluster on `store`, sharing the signing key and certificate of `first`.
    pub fn peer_of(first: &Fluxd, store: &str, extra: &[&str]) -> FluxdOpts {
        let data = first.data_dir();
        let mut args: Vec<String> = vec![
            "--store".into(),
            store.into(),
            "--signing-key".into(),
            data.join("signing-key.json").display().to_string(),
            "--tls-cert".into(),
            data.join("tls/server.crt").display().to_string(),
            "--tls-key".into(),
            data.join("tls/server.key").display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        FluxdOpts {
            args,
            ca_file: Some(first.ca_path()),
        }
    }
}

impl Fluxd {
    pub async fn start() -> Fluxd {
        Fluxd::start_with(FluxdOpts::default()).await
    }

    pub async fn start_with(opts: FluxdOpts) -> Fluxd {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut cmd = Command::new(bin("fluxd"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--node-id")
            .arg(format!("fluxd-{port}"))
            .args(&opts.args);
        let proc = Proc::spawn("fluxd", cmd, dir.path().join("fluxd.log")).expect("spawn fluxd");
        let data = dir.path().join("data");
        let ca_path = opts
            .ca_file
            .clone()
            .unwrap_or_else(|| data.join("tls/ca.crt"));
        let url = format!("https://127.0.0.1:{port}");
        let (http, admin) = eventually("fluxd to come up", Duration::from_secs(30), || {
            let (data, url, ca_path) = (data.clone(), url.clone(), ca_path.clone());
            async move {
                let ca = std::fs::read(&ca_path).ok()?;
                let admin = std::fs::read_to_string(data.join("admin.token")).ok()?;
                let http = client_with_ca(&ca).ok()?;
                let r = http.get(format!("{url}/readyz")).send().await.ok()?;
                r.status()
                    .is_success()
                    .then(|| (http, admin.trim().to_string()))
            }
        })
        .await;
        Fluxd {
            proc,
            dir,
            port,
            url,
            http,
            admin,
            ca: ca_path,
        }
    }

    /// This node's `/metrics` text (read with the cluster admin token, as `/metrics` on the
    /// API listener needs a token of the cluster tenant), `None` if unreachable or refused.
    pub async fn metrics_text(&self) -> Option<String> {
        let resp = self
            .http
            .get(format!("{}/metrics", self.url))
            .bearer_auth(&self.admin)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !resp.status().is_success() {
            return None;
        }
        resp.text().await.ok()
    }

    /// Point reads of the store this node has made (`flux_store_op_duration_seconds_count` of
    /// `get`), 0 if its metrics are unreadable.
    pub async fn store_gets(&self) -> f64 {
        let text = self.metrics_text().await.expect("metrics");
        metric_in(&text, "flux_store_op_duration_seconds_count{op=\"get\"}").unwrap_or(0.0)
    }

    /// Value of an unlabelled metric on this node's `/metrics`, `None` if unreachable.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        metric_in(&self.metrics_text().await?, name)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.ca.clone()
    }

    /// A request with a bearer token.
    pub fn req(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token)
    }

    /// The answer to `GET path` with `token`, whatever its status, its body unread; panics when
    /// the request could not be sent.
    pub async fn get_response(&self, path: &str, token: &str) -> reqwest::Response {
        self.req(reqwest::Method::GET, path, token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// GET returning status and JSON body (Null when the body is not JSON).
    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        send(self.req(reqwest::Method::GET, path, token)).await
    }

    /// POST JSON returning status and JSON body.
    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        send(self.req(reqwest::Method::POST, path, token).json(body)).await
    }

    /// Creates a token through the API with the admin token.
    pub async fn token(&self, tenant: &str, role: &str, node_id: Option<&str>) -> String {
        let mut body = json!({"tenant": tenant, "role": role, "ttl_secs": 3600});
        if let Some(n) = node_id {
            body["node_id"] = json!(n);
        }
        let (status, v) = self.post("/v1/tokens", &self.admin, &body).await;
        assert_eq!(status, 201, "token create: {v}");
        v["token"].as_str().expect("token").to_string()
    }

    /// Starts an agent for `tenant` as `node_id`.
    pub async fn agent(&self, tenant: &str, node_id: &str, labels: &[&str]) -> Proc {
        self.agent_with_args(tenant, node_id, labels, &[]).await
    }

    /// Starts an agent of this node with the extra command-line arguments `extra`.
    pub async fn agent_with_args(
        &self,
        tenant: &str,
        node_id: &str,
        labels: &[&str],
        extra: &[&str],
    ) -> Proc {
        self.agent_full(
            tenant,
            node_id,
            labels,
            std::slice::from_ref(&self.url),
            extra,
        )
        .await
    }

    /// Starts an agent that knows several server URLs (it fails over between them).
    pub async fn agent_with_servers(
        &self,
        tenant: &str,
        node_id: &str,
        labels: &[&str],
        servers: &[String],
    ) -> Proc {
        self.agent_full(tenant, node_id, labels, servers, &[]).await
    }

    /// Starts an agent with extra command-line arguments and waits until it is online.
    pub async fn agent_full(
        &self,
        tenant: &str,
        node_id: &str,
        labels: &[&str],
        servers: &[String],
        extra: &[&str],
    ) -> Proc {
        let token = self.token(tenant, "agent", Some(node_id)).await;
        let token_file = self.dir.path().join(format!("{node_id}.token"));
        std::fs::write(&token_file, &token).expect("write agent token");
        let mut cmd = Command::new(bin("flux-agent"));
        for url in servers {
            cmd.arg("--server").arg(url);
        }
        cmd.arg("--ca")
            .arg(self.ca_path())
            .arg("--token-file")
            .arg(&token_file)
            .arg("--poll-secs")
            .arg("5");
        for l in labels {
            cmd.arg("--label").arg(l);
        }
        cmd.args(extra);
        let log = (0..)
            .map(|i| self.dir.path().join(format!("agent-{node_id}.{i}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        let proc = Proc::spawn(&format!("agent {node_id}"), cmd, log).expect("spawn agent");
        let admin_for_tenant = self.token(tenant, "viewer", None).await;
        eventually(
            &format!("agent {node_id} online"),
            Duration::from_secs(20),
            || async {
                let (s, v) = self
                    .get(&format!("/v1/agents/{node_id}"), &admin_for_tenant)
                    .await;
                (s == 200 && v["state"] == "online").then_some(())
            },
        )
        .await;
        proc
    }

    /// Starts the stopped node again on the same port and data dir with `args`, and waits until
    /// it leads.
    pub async fn start_again(&mut self, args: &[&str]) {
        let mut cmd = Command::new(bin("fluxd"));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--node-id")
            .arg(format!("fluxd-{}", self.port))
            .args(args);
        let n = std::fs::read_dir(self.dir.path()).expect("dir").count();
        self.proc = Proc::spawn("fluxd", cmd, self.dir.path().join(format!("fluxd-{n}.log")))
            .expect("spawn fluxd");
        eventually(
            "restarted fluxd to lead",
            Duration::from_secs(30),
            || async { (self.metric("flux_leader_status").await? == 1.0).then_some(()) },
        )
        .await;
    }

    /// Starts `flux-agent --enroll-token-file token_file --state-dir state_dir` as `node_id`
    /// (not waiting for it).
    pub fn spawn_enrolled_agent(
        &self,
        token_file: &Path,
        node_id: &str,
        state_dir: &Path,
        extra: &[&str],
    ) -> Proc {
        let mut cmd = Command::new(bin("flux-agent"));
        cmd.arg("--server")
            .arg(&self.url)
            .arg("--ca")
            .arg(self.ca_path())
            .arg("--enroll-token-file")
            .arg(token_file)
            .arg("--node-id")
            .arg(node_id)
            .arg("--state-dir")
            .arg(state_dir)
            .arg("--poll-secs")
            .arg("5")
            .args(extra);
        let log = (0..)
            .map(|i| self.dir.path().join(format!("agent-{node_id}.{i}.log")))
            .find(|p| !p.exists())
            .expect("a free log name");
        Proc::spawn(&format!("agent {node_id}"), cmd, log).expect("spawn agent")
    }

    /// Waits until agent `node_id` of the tenant of `token` shows `state`.
    pub async fn wait_agent_state(
        &self,
        token: &str,
        node_id: &str,
        state: &str,
        within: Duration,
    ) {
        eventually(&format!("agent {node_id} {state}"), within, || async {
            let (s, v) = self.get(&format!("/v1/agents/{node_id}"), token).await;
            (s == 200 && v["state"] == state).then_some(())
        })
        .await;
    }

    /// Polls a job until `pred` holds on it; returns the job.
    pub async fn wait_job(
        &self,
        token: &str,
        id: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(&format!("job {id}"), timeout, || async {
            let (s, v) = self.get(&format!("/v1/jobs/{id}"), token).await;
            (s == 200 && pred(&v)).then_some(v)
        })
        .await
    }

    /// Submits a job that blocks (`sleep 600`, its pid written to `dir/pid`) when it runs on
    /// `blocking_node` and prints `ran on <node>` anywhere else (up to 3 attempts); waits until it
    /// runs. Returns the
    /// job id and the pid of the blocking process.
    pub async fn submit_blocking_on(
        &self,
        blocking_node: &str,
        dir: &Path,
        timeout: Duration,
    ) -> (String, i32) {
        let cmd = format!(
            "if [ \"$FLUX_NODE_ID\" = {blocking_node} ]; then echo $$ > {dir}/pid; exec sleep 600; fi; echo ran on $FLUX_NODE_ID",
            dir = dir.display()
        );
        let id = self
            .submit(&self.admin, &json!({"command": cmd, "max_attempts": 3}))
            .await;
        let pid = read_pid(&dir.join("pid"), timeout).await;
        self.wait_job(&self.admin, &id, timeout, |v| v["status"] == "running")
            .await;
        (id, pid)
    }

    /// A job's stored output as text.
    pub async fn logs(&self, token: &str, id: &str) -> String {
        self.logs_response(token, id, "")
            .await
            .text()
            .await
            .expect("logs body")
    }

    /// The answer to `GET /v1/jobs/<id>/logs?<query>` (no `?` when `query` is empty) with
    /// `token`, whatever its status; panics when the request could not be sent.
    pub async fn logs_response(&self, token: &str, id: &str, query: &str) -> reqwest::Response {
        let mut path = format!("/v1/jobs/{id}/logs");
        if !query.is_empty() {
            path = format!("{path}?{query}");
        }
        self.get_response(&path, token).await
    }

    /// Runs `fluxctl` against this node with `token`.
    pub fn fluxctl(&self, token: &str, args: &[&str]) -> Output {
        Command::new(bin("fluxctl"))
            .args(args)
            .env("FLUX_SERVER", &self.url)
            .env("FLUX_CA", self.ca_path())
            .env("FLUX_TOKEN", token)
            .env("FLUX_CONFIG", self.dir.path().join("fluxctl.toml"))
            .env_remove("FLUX_TOKEN_FILE")
            .env_remove("FLUX_CONTEXT")
            .env_remove("FLUX_OUTPUT")
            .output()
            .expect("run fluxctl")
    }
}

/// Whether a job (JSON) is in a final state.
pub fn terminal(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled" | "timed_out" | "lost")
    )
}

/// A response header's value as text, if it is there (and is text).
pub fn header_text(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Sends a request; returns status and JSON body (Null if not JSON).
pub async fn send(rb: reqwest::RequestBuilder) -> (u16, Value) {
    let r = rb.send().await.expect("request sent");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// An HTTPS client trusting only the given CA.
pub fn client_with_ca(ca_pem: &[u8]) -> Result<reqwest::Client> {
    let cert = reqwest::Certificate::from_pem(ca_pem)?;
    Ok(reqwest::Client::builder()
        .tls_certs_only([cert])
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// Reads a pid written by a job into `path`, waiting for it to appear.
pub async fn read_pid(path: &Path, timeout: Duration) -> i32 {
    eventually(&format!("pid file {}", path.display()), timeout, || async {
        std::fs::read_to_string(path).ok()?.trim().parse().ok()
    })
    .await
}

/// Sends SIGTERM to `p` and waits up to `timeout` (failing as waiting for `what`) until it has
/// exited; returns how it exited.
pub async fn terminate(p: &mut Proc, what: &str, timeout: Duration) -> std::process::ExitStatus {
    p.signal(nix::sys::signal::Signal::SIGTERM);
    eventually(what, timeout, || {
        let s = p.try_exit();
        async move { s }
    })
    .await
}

/// Kills a leftover process from a test (best effort).
pub fn kill_pid(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Fails when `s` is not valid UTF-8 output of a process, with context.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `cmd` with `input` on its standard input; returns its exit status and captured output.
pub fn output_with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Checks that `o` succeeded, or fails with its stderr.
pub fn ok(o: &Output) -> Result<String> {
    if !o.status.success() {
        bail!("exit {:?}: {}", o.status, stderr(o));
    }
    Ok(stdout(o))
}

/// The value of the series `name` (with its labels, if it has any) in a `/metrics` text.
fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}
