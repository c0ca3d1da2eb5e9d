//! Carrying out one task, in four steps: tell the control plane the attempt starts
//! ([`Agent::start`]), run the command or its simulation ([`Agent::launch`]), upload its output
//! as it comes ([`OutputUploader`]: secrets masked, small chunks gathered by [`Coalescer`],
//! chunks numbered), and report the result ([`Agent::report`]). A refused start runs nothing; an attempt the control plane took away
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
use tokio::time::Instant;
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
            Exec::Real { state_dir, run_as } => {
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
                    run_as: run_as.clone(),
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

/// Largest upload the agent gathers before sending it (the server takes up to 256 KiB).
pub(crate) const COALESCE_BYTES: usize = 64 * 1024;
/// Longest a piece of output waits for more before it is sent.
pub(crate) const COALESCE_WAIT: Duration = Duration::from_millis(200);

/// Gathers small pieces of output into few uploads: consecutive pieces of one stream go out
/// together once they reach `max_bytes`, once the first of them has waited `max_wait`, or when
/// the other stream produces output (the order between streams is kept).
pub(crate) struct Coalescer {
    stream: Stream,
    buf: Vec<u8>,
    since: Option<Instant>,
    max_bytes: usize,
    max_wait: Duration,
}

impl Coalescer {
    pub(crate) fn new(max_bytes: usize, max_wait: Duration) -> Coalescer {
        Coalescer {
            stream: Stream::Stdout,
            buf: Vec::new(),
            since: None,
            max_bytes,
            max_wait,
        }
    }

    /// Adds a piece of output read at `now`; returns what is to be sent now, in order.
    pub(crate) fn push(
        &mut self,
        stream: Stream,
        data: &[u8],
        now: Instant,
    ) -> Vec<(Stream, Vec<u8>)> {
        let mut out = Vec::new();
        if !self.buf.is_empty() && stream != self.stream {
            out.extend(self.flush());
        }
        if data.is_empty() {
            return out;
        }
        if self.buf.is_empty() {
            self.stream = stream;
            self.since = Some(now);
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= self.max_bytes {
            out.extend(self.flush());
        }
        out
    }

    /// When what is held must be sent, if anything is held.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.since.map(|t| t + self.max_wait)
    }

    /// Everything held, to be sent now.
    pub(crate) fn flush(&mut self) -> Option<(Stream, Vec<u8>)> {
        self.since = None;
        (!self.buf.is_empty()).then(|| (self.stream, std::mem::take(&mut self.buf)))
    }
}

/// Uploads one attempt's output in the order it was produced. Each stream goes through its own
/// [`Redactor`], so a secret split across two chunks is still masked; small pieces are
/// gathered into larger chunks ([`Coalescer`]); chunks are numbered from 0 by `seq`, which
/// only advances when a chunk was stored.
struct OutputUploader<'a> {
    api: &'a ApiClient,
    id: &'a str,
    path: String,
    seq: u64,
    /// Stdout's and stderr's redactors.
    redact: [Redactor; 2],
    coalesce: Coalescer,
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
            coalesce: Coalescer::new(COALESCE_BYTES, COALESCE_WAIT),
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
        loop {
            let deadline = self.coalesce.deadline();
            let chunk = tokio::select! {
                c = rx.recv() => c,
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)),
                    if deadline.is_some() =>
                {
                    if let Some((stream, data)) = self.coalesce.flush() {
                        self.send(stream, &data, cancel).await;
                    }
                    continue;
                }
            };
            let Some(chunk) = chunk else { break };
            let r = match chunk.stream {
                Stream::Stdout => &mut self.redact[0],
                Stream::Stderr => &mut self.redact[1],
            };
            let data = r.push(&chunk.data);
            for (stream, data) in self.coalesce.push(chunk.stream, &data, Instant::now()) {
                self.send(stream, &data, cancel).await;
            }
        }
        if let Some((stream, data)) = self.coalesce.flush() {
            self.send(stream, &data, cancel).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_pieces_are_gathered_until_size_time_or_the_other_stream() {
        let t0 = Instant::now();
        let mut c = Coalescer::new(10, Duration::from_millis(200));
        assert_eq!(c.deadline(), None);
        // Tiny pieces of one stream are held, the deadline set by the first.
        for i in 0..3u64 {
            let at = t0 + Duration::from_millis(i * 10);
            assert!(c.push(Stream::Stdout, b"ab", at).is_empty());
        }
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(200)));
        // The other stream sends what was held first, keeping the order.
        let out = c.push(Stream::Stderr, b"E", t0 + Duration::from_millis(50));
        assert_eq!(out, vec![(Stream::Stdout, b"ababab".to_vec())]);
        assert_eq!(c.deadline(), Some(t0 + Duration::from_millis(250)));
        // Reaching the size sends at once.
        let out = c.push(Stream::Stderr, b"123456789", t0 + Duration::from_millis(60));
        assert_eq!(out, vec![(Stream::Stderr, b"E123456789".to_vec())]);
        assert_eq!(c.deadline(), None);
        // An empty piece holds nothing; flushing gives what is left, once.
        assert!(c.push(Stream::Stdout, b"", t0).is_empty());
        assert_eq!(c.flush(), None);
        c.push(Stream::Stdout, b"x", t0);
        assert_eq!(c.flush(), Some((Stream::Stdout, b"x".to_vec())));
        assert_eq!(c.flush(), None);
    }
}
