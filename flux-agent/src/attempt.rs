//! Carrying out one task, in four steps: tell the control plane the attempt starts
//! ([`Agent::start`]), run the command or its simulation ([`Agent::launch`]), upload its output
//! as it comes ([`OutputUploader`]: secrets masked, chunks numbered), and report the result
//! ([`Agent::report`]). A refused start runs nothing; an attempt the control plane took away
//! (410 on an output upload) is cancelled; every call is retried like the agent's others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use flux_core::client::ApiClient;
use flux_core::model::{AttemptResult, OutputChunk, Stream, Task};
use flux_core::redact::Redactor;
use reqwest::StatusCode;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::{Agent, Exec, with_retry};
use crate::executor::{self, ExecOutcome};

impl Agent {
    /// Runs `task` to its end and reports it; `cancel` stops the run (the control plane's
    /// cancellation or the agent's shutdown).
    pub(crate) async fn execute(&self, task: Task, cancel: CancellationToken) {
        let id = task.attempt_id.clone();
        // The attempt's own calls are retried until they succeed or are refused: they do not
        // stop with the agent.
        let stop = CancellationToken::new();
        if !self.start(&id, &stop).await {
            return;
        }
        tracing::debug!(attempt = %id, command = %task.command.display(), "command");
        let (tx, rx) = mpsc::channel::<executor::Chunk>(64);
        let mut uploader = OutputUploader::new(&self.api, &id, &task.secret_env, &stop);
        let run = self.launch(task, tx, &cancel);
        uploader.upload(rx, &cancel).await;
        let outcome = run
            .await
            .unwrap_or_else(|e| ExecOutcome::FailedToStart(format!("executor task failed: {e}")));
        self.report(&id, outcome.into_result(), &stop).await;
    }

    /// Tells the control plane the attempt starts; `false` (logged) when it refuses, and then
    /// nothing runs.
    async fn start(&self, id: &str, stop: &CancellationToken) -> bool {
        let start_path = format!("/v1/agent/attempts/{id}/start");
        let empty = serde_json::json!({});
        match with_retry(stop, "start", || {
            self.api.post::<serde_json::Value, _>(&start_path, &empty)
        })
        .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(attempt = %id, error = %e, "not starting: the control plane refused");
                false
            }
        }
    }

    /// Starts the task's command (or, for simulated agents, its simulation), sending its
    /// output to `tx`; the handle gives its outcome.
    fn launch(
        &self,
        task: Task,
        tx: mpsc::Sender<executor::Chunk>,
        cancel: &CancellationToken,
    ) -> JoinHandle<ExecOutcome> {
        let id = task.attempt_id.clone();
        match &self.profile.exec {
            Exec::Real { state_dir } => {
                tracing::info!(attempt = %id, "starting");
                let spec = executor::ExecSpec {
                    command: task.command,
                    env: {
                        let mut env = task.env;
                        env.extend(task.secret_env);
                        env.insert("FLUX_JOB_ID".into(), task.job_id.clone());
                        env.insert("FLUX_ATTEMPT_ID".into(), id.clone());
                        env.insert("FLUX_NODE_ID".into(), self.node_id.clone());
                        env
                    },
                    workdir: task.workdir.map(PathBuf::from),
                    timeout: Some(Duration::from_secs(task.timeout_secs)),
                    track: state_dir.as_ref().map(|d| d.join(&id)),
                };
                tokio::spawn(executor::run(spec, tx, cancel.clone()))
            }
            Exec::Simulated { run } => {
                let line = format!("simulated {} on {}\n", task.job_id, self.node_id);
                tokio::spawn(executor::simulate(
                    *run,
                    Duration::from_secs(task.timeout_secs),
                    line,
                    tx,
                    cancel.clone(),
                ))
            }
        }
    }

    /// Records the attempt's result with the control plane (logged when it cannot).
    async fn report(&self, id: &str, result: AttemptResult, stop: &CancellationToken) {
        if let Exec::Real { .. } = self.profile.exec {
            tracing::info!(attempt = %id, ?result, "finished");
        }
        let path = format!("/v1/agent/attempts/{id}/result");
        if let Err(e) = with_retry(stop, "result report", || {
            self.api.post::<serde_json::Value, _>(&path, &result)
        })
        .await
        {
            tracing::warn!(attempt = %id, error = %e, "result not recorded");
        }
    }
}

/// Uploads one attempt's output in the order it was produced. Each stream goes through its own
/// [`Redactor`], so a secret split across two chunks is still masked; chunks are numbered from
/// 0 by `seq`, which only advances when a chunk was stored.
struct OutputUploader<'a> {
    api: &'a ApiClient,
    id: &'a str,
    path: String,
    seq: u64,
    /// Stdout's and stderr's redactors.
    redact: [Redactor; 2],
    stop: &'a CancellationToken,
}

impl<'a> OutputUploader<'a> {
    fn new(
        api: &'a ApiClient,
        id: &'a str,
        secret_env: &BTreeMap<String, String>,
        stop: &'a CancellationToken,
    ) -> Self {
        // Secret values never leave the agent: each stream is masked before upload.
        let secrets: Vec<String> = secret_env.values().cloned().collect();
        OutputUploader {
            api,
            id,
            path: format!("/v1/agent/attempts/{id}/output"),
            seq: 0,
            redact: [Redactor::new(&secrets), Redactor::new(&secrets)],
            stop,
        }
    }

    /// Uploads every chunk from `rx` until the run closes it, then what the redactors held
    /// back. When the control plane says the attempt was taken away, `cancel` stops the run.
    async fn upload(
        &mut self,
        mut rx: mpsc::Receiver<executor::Chunk>,
        cancel: &CancellationToken,
    ) {
        while let Some(chunk) = rx.recv().await {
            let r = match chunk.stream {
                Stream::Stdout => &mut self.redact[0],
                Stream::Stderr => &mut self.redact[1],
            };
            let data = r.push(&chunk.data);
            self.send(chunk.stream, &data, cancel).await;
        }
        let stdout = self.redact[0].finish();
        let stderr = self.redact[1].finish();
        self.send(Stream::Stdout, &stdout, cancel).await;
        self.send(Stream::Stderr, &stderr, cancel).await;
    }

    /// Uploads one (already masked) chunk; empty ones are skipped.
    async fn send(&mut self, stream: Stream, data: &[u8], cancel: &CancellationToken) {
        if data.is_empty() {
            return;
        }
        let body = OutputChunk {
            seq: self.seq,
            stream,
            data: String::from_utf8_lossy(data).into_owned(),
        };
        match with_retry(self.stop, "output upload", || {
            self.api.post::<serde_json::Value, _>(&self.path, &body)
        })
        .await
        {
            Ok(_) => self.seq += 1,
            Err(e) if e.status() == Some(StatusCode::GONE) => {
                tracing::info!(attempt = %self.id, "attempt taken away; stopping it");
                cancel.cancel();
            }
            Err(e) => tracing::warn!(attempt = %self.id, error = %e, "output chunk not stored"),
        }
    }
}
