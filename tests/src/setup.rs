//! Set-up and request steps that many end-to-end tests share: starting a node with extra
//! arguments, starting the nodes of a cluster on one store, making the usual role tokens,
//! submitting a job, creating an object with the status the test expects, running an example
//! script against a node, and reading common shapes out of an answer.
//!
//! Guarantees:
//! - Every helper only starts processes or sends requests through the public interfaces; none
//!   waits for a condition other than what [`Fluxd::start_with`] already waits for.
//! - A helper that expects a status asserts it with the response body as the failure message,
//!   so a test that calls it fails where and as it would with the lines inline.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;

use crate::{Fluxd, FluxdOpts, Proc, bin_dir, eventually, terminal};

impl FluxdOpts {
    /// Options carrying just the command-line arguments `args`.
    pub fn with_args(args: &[&str]) -> FluxdOpts {
        FluxdOpts {
            args: args.iter().map(|s| s.to_string()).collect(),
            ca_file: None,
        }
    }

    /// The first node of a cluster on `store`: `--store <store>`, then `extra`.
    pub fn on_store(store: &str, extra: &[&str]) -> FluxdOpts {
        let mut args = vec!["--store", store];
        args.extend(extra);
        FluxdOpts::with_args(&args)
    }
}

impl Fluxd {
    /// Creates a viewer, an operator and an agent token (for node `a1`) of `tenant`, in that
    /// order; returns them in that order.
    pub async fn role_tokens(&self, tenant: &str) -> (String, String, String) {
        let viewer = self.token(tenant, "viewer", None).await;
        let operator = self.token(tenant, "operator", None).await;
        let agent = self.token(tenant, "agent", Some("a1")).await;
        (viewer, operator, agent)
    }

    /// Starts a node with the default options and agent `agent-1` of tenant `default`, without
    /// labels; returns both.
    pub async fn start_with_agent() -> (Fluxd, Proc) {
        let d = Fluxd::start().await;
        let agent = d.agent("default", "agent-1", &[]).await;
        (d, agent)
    }

    /// Starts a node with the extra command-line arguments `args`.
    pub async fn start_args(args: &[&str]) -> Fluxd {
        Fluxd::start_with(FluxdOpts::with_args(args)).await
    }

    /// Starts `n` nodes on `store`, each with `extra`; the others share the first's signing key
    /// and certificate ([`FluxdOpts::peer_of`]).
    pub async fn cluster_on(store: &str, n: usize, extra: &[&str]) -> Vec<Fluxd> {
        let mut nodes = vec![Fluxd::start_with(FluxdOpts::on_store(store, extra)).await];
        for _ in 1..n {
            let opts = FluxdOpts::peer_of(&nodes[0], store, extra);
            nodes.push(Fluxd::start_with(opts).await);
        }
        nodes
    }

    /// POSTs `body` to `path` and asserts the answer is `status`; returns the body.
    pub async fn post_expect(&self, path: &str, token: &str, body: &Value, status: u16) -> Value {
        let (s, v) = self.post(path, token, body).await;
        assert_eq!(s, status, "{v}");
        v
    }

    /// [`Fluxd::post_expect`] as the cluster admin.
    pub async fn admin_post_expect(&self, path: &str, body: &Value, status: u16) -> Value {
        self.post_expect(path, &self.admin, body, status).await
    }

    /// Submits the job `body` (`POST /v1/jobs`) as the cluster admin and asserts the answer is
    /// `status`; returns the answer's body.
    pub async fn admin_job_expect(&self, body: &Value, status: u16) -> Value {
        self.admin_post_expect("/v1/jobs", body, status).await
    }

    /// Runs `fluxctl job run -l <selector> --all`, then `args`, as `token`.
    pub fn run_all(&self, token: &str, selector: &str, args: &[&str]) -> Output {
        let mut all = vec!["job", "run", "-l", selector, "--all"];
        all.extend(args);
        self.fluxctl(token, &all)
    }

    /// Runs `fluxctl -o json`, then `args`, as `token`.
    pub fn fluxctl_json(&self, token: &str, args: &[&str]) -> Output {
        let mut all = vec!["-o", "json"];
        all.extend(args);
        self.fluxctl(token, &all)
    }

    /// Runs `fluxctl apply -f <file> --wait --timeout <timeout>` as the admin.
    pub fn apply_wait(&self, file: &str, timeout: &str) -> Output {
        self.fluxctl(
            &self.admin,
            &["apply", "-f", file, "--wait", "--timeout", timeout],
        )
    }

    /// Waits (up to `timeout`, failing as `what`) until metric `name` is at least `min`.
    pub async fn wait_metric_at_least(&self, what: &str, name: &str, min: f64, timeout: Duration) {
        eventually(what, timeout, || async {
            (self.metric(name).await? >= min).then_some(())
        })
        .await;
    }

    /// How many elements the JSON array that `GET path` answers holds.
    pub async fn count(&self, path: &str, token: &str) -> usize {
        self.get(path, token).await.1.as_array().unwrap().len()
    }

    /// `bash examples/<script>`, with `fluxctl` on its `PATH` and its environment naming this
    /// node, its CA and `token` (and no configuration file).
    pub fn example(&self, script: &str, token: &str) -> Command {
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut cmd = Command::new("bash");
        cmd.arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples")
                .join(script),
        )
        .env("PATH", path)
        .env("FLUX_SERVER", &self.url)
        .env("FLUX_CA", self.ca_path())
        .env("FLUX_TOKEN", token)
        .env("FLUX_CONFIG", self.dir.path().join("none.toml"));
        cmd
    }

    /// Submits the job `body` (`POST /v1/jobs`), asserts it is accepted (202) and returns its id.
    pub async fn submit(&self, token: &str, body: &Value) -> String {
        let v = self.post_expect("/v1/jobs", token, body, 202).await;
        v["job_id"].as_str().expect("job id").to_string()
    }

    /// Submits the job `body` as the admin ([`Fluxd::submit`]) and waits up to `timeout` for it
    /// to end; returns the job as it ended.
    pub async fn run_to_end(&self, body: &Value, timeout: Duration) -> Value {
        let id = self.submit(&self.admin, body).await;
        self.wait_job(&self.admin, &id, timeout, terminal).await
    }
}

/// The JSON document that the successful run `o` printed; panics with its standard error when it
/// failed, or when what it printed is not JSON.
#[track_caller]
pub fn json_of(o: &Output) -> Value {
    serde_json::from_str(&crate::ok(o).unwrap()).unwrap()
}

/// The string `field` of every element of the JSON array `v`; panics when `v` is not an array
/// or an element has no such string.
pub fn field_strs<'a>(v: &'a Value, field: &str) -> Vec<&'a str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x[field].as_str().unwrap())
        .collect()
}

/// The strings `a` and `b` of every element of the JSON array `v`, as pairs; panics when `v` is
/// not an array or an element lacks either string.
pub fn field_pairs(v: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let s = |f: &str| x[f].as_str().unwrap().to_string();
            (s(a), s(b))
        })
        .collect()
}

/// The first element of the JSON array `v` whose `field` is `want`; panics when `v` is not an
/// array.
pub fn find_by<'a>(v: &'a Value, field: &str, want: &str) -> Option<&'a Value> {
    v.as_array().unwrap().iter().find(|x| x[field] == want)
}

/// Sends a request; returns the body as text, whatever the status.
pub async fn send_text(rb: reqwest::RequestBuilder) -> String {
    rb.send().await.unwrap().text().await.unwrap()
}

/// The message of an error answer (`error.message`), empty when there is none.
pub fn error_message(v: &Value) -> &str {
    v["error"]["message"].as_str().unwrap_or_default()
}
