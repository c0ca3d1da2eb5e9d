//! Carrying out one task: run the command or its simulation ([`Agent::launch`]), upload its
//! output as it comes ([`OutputUploader`]: secrets masked, small chunks gathered by
//! [`Coalescer`], chunks numbered), tell the control plane the attempt started once the run has
//! lasted `--start-after` (100 ms by default) ([`Agent::start`]), and report the result ([`Agent::report`])
//! carrying the output still held at the end. A run shorter than that is started and ended by
//! its result, which says how long it ran: a short job's start, output and result take one
//! request and one commit. A refused start (the attempt was taken away meanwhile) stops the run
//! and reports nothing; an attempt the control plane took away (410 on an output upload) is
//! cancelled; every call is retried like the agent's others.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use flux_core::client::ApiClient;
use flux_core::model::{AttemptResult, OutputChunk, ResultReport, Stream, Task};
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
        tracing::debug!(attempt = %id, command = %task.command.display(), "command");
        let (tx, rx) = mpsc::channel::<executor::Chunk>(64);
        let mut uploader = OutputUploader::new(&self.api, &id, &task.secret_env, &stop);
        // The run's own token: a refused start stops it without stopping the agent.
        let run_cancel = cancel.child_token();
        let t0 = Instant::now();
        let run = self.launch(task, tx, &run_cancel);
        let ended = CancellationToken::new();
        let uploading = async {
            uploader.upload(rx, &run_cancel).await;
            ended.cancel();
        };
        let ((), start) = tokio::join!(
            uploading,
            self.start_unless_ended(&id, &ended, &run_cancel, &stop)
        );
        let ran = t0.elapsed();
        let outcome = run
            .await
            .unwrap_or_else(|e| ExecOutcome::FailedToStart(format!("executor task failed: {e}")));
        match start {
            Start::Refused => {}
            Start::Reported => {
                self.report(&id, outcome.into_result(), None, &mut uploader, &stop)
                    .await
            }
            Start::WithResult => {
                self.report(&id, outcome.into_result(), Some(ran), &mut uploader, &stop)
                    .await
            }
        }
    }

    /// Reports the start of a run that is still going `--start-after` (100 ms by default) after it began (a
    /// shorter one is started and ended by its result: one request and one commit less). A
    /// refused start (the attempt was taken away meanwhile) stops the run, and nothing is
    /// reported.
    async fn start_unless_ended(
        &self,
        id: &str,
        ended: &CancellationToken,
        run_cancel: &CancellationToken,
        stop: &CancellationToken,
    ) -> Start {
        tokio::select! {
            _ = ended.cancelled() => return Start::WithResult,
            _ = tokio::time::sleep(self.profile.start_after) => {}
        }
        tokio::select! {
            started = self.start(id, stop) => {
                if started {
                    Start::Reported
                } else {
                    run_cancel.cancel();
                    Start::Refused
                }
            }
            // The result records the start whether or not this one arrived.
            _ = ended.cancelled() => Start::WithResult,
        }
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

    /// Reports attempt `id`, launched by a previous process of this agent that died (its record
    /// was in the state directory), as interrupted: the control plane requeues it as a lost
    /// attempt (counted against the job's `max_attempts`) whether or not its start was
    /// reported, so a run cut short before its start report is not delivered and run again
    /// under the same attempt. An attempt already ended or taken away is left as it is.
    pub(crate) async fn report_interrupted(&self, id: &str, stop: &CancellationToken) {
        let path = format!("/v1/agent/attempts/{id}/result");
        let body = ResultReport::new(
            AttemptResult {
                outcome: flux_core::model::Outcome::Cancelled,
                exit_code: None,
                signal: None,
                message: Some("interrupted: the agent process died".into()),
            },
            Vec::new(),
        );
        match with_retry(stop, "interrupted report", || {
            self.api.post::<serde_json::Value, _>(&path, &body)
        })
        .await
        {
            Ok(_) => tracing::info!(attempt = %id, "reported interrupted by the agent's restart"),
            Err(e) => tracing::info!(attempt = %id, error = %e, "interrupted attempt not reported"),
        }
    }

    /// Records the attempt's result with the control plane, with the output the uploader still
    /// holds and, for a run whose start was not reported, how long it ran (logged when it
    /// cannot). A server that refuses those extras (one that does not know the fields answers
    /// 4xx) gets the output on the output endpoint and then the plain result.
    async fn report(
        &self,
        id: &str,
        result: AttemptResult,
        ran: Option<Duration>,
        uploader: &mut OutputUploader<'_>,
        stop: &CancellationToken,
    ) {
        if let Exec::Real { .. } = self.profile.exec {
            tracing::info!(attempt = %id, ?result, "finished");
        }
        let path = format!("/v1/agent/attempts/{id}/result");
        let carried = uploader.carried();
        let mut sent = if carried.is_empty() && ran.is_none() {
            None
        } else {
            let mut body = ResultReport::new(result.clone(), carried);
            body.ran_ms = ran.map(|d| d.as_millis().try_into().unwrap_or(u64::MAX));
            match with_retry(stop, "result report", || {
                self.api.post::<serde_json::Value, _>(&path, &body)
            })
            .await
            {
                Err(e) if e.status().is_some_and(refuses_body) => {
                    tracing::info!(
                        attempt = %id, error = %e,
                        "output and run time not taken with the result; sending them apart"
                    );
                    uploader.upload_held().await;
                    None
                }
                other => Some(other),
            }
        };
        if sent.is_none() {
            // The plain result, which every server takes.
            let body = ResultReport::new(result, Vec::new());
            sent = Some(
                with_retry(stop, "result report", || {
                    self.api.post::<serde_json::Value, _>(&path, &body)
                })
                .await,
            );
        }
        if let Some(Err(e)) = sent {
            tracing::warn!(attempt = %id, error = %e, "result not recorded");
        }
    }
}

/// What became of an attempt's start report.
enum Start {
    /// The control plane took it.
    Reported,
    /// The run ended first (or while it was on its way): the result records the start.
    WithResult,
    /// The control plane refused it (the attempt was taken away): the run was stopped and
    /// nothing more is reported.
    Refused,
}

/// Whether a status says the server did not take the request's body as sent (malformed,
/// unknown field, too large, invalid), rather than the attempt.
fn refuses_body(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNPROCESSABLE_ENTITY
    )
}

/// Largest upload the agent gathers before sending it (the server takes up to 256 KiB).
pub(crate) const COALESCE_BYTES: usize = 64 * 1024;
/// Longest a piece of output waits for more before it is sent.
pub(crate) const COALESCE_WAIT: Duration = Duration::from_millis(200);
/// Most output bytes carried with the result (the server takes up to 256 KiB there too); the
/// rest of what is held at the end is uploaded first.
pub(crate) const CARRY_BYTES: usize = 128 * 1024;

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

/// The output held at the end of a run for the result to carry: at most `max_bytes` and
/// `max_chunks` chunks. A piece that does not fit pushes out what is held before it (to be
/// uploaded first, keeping the order), and one that is too large on its own is uploaded too.
pub(crate) struct Carry {
    held: Vec<(Stream, Vec<u8>)>,
    bytes: usize,
    max_bytes: usize,
    max_chunks: usize,
}

impl Carry {
    pub(crate) fn new(max_bytes: usize, max_chunks: usize) -> Carry {
        Carry {
            held: Vec::new(),
            bytes: 0,
            max_bytes,
            max_chunks,
        }
    }

    /// Holds a piece of output; returns what is to be uploaded now, in order (empty pieces
    /// are dropped).
    pub(crate) fn hold(&mut self, stream: Stream, data: Vec<u8>) -> Vec<(Stream, Vec<u8>)> {
        if data.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        if self.bytes + data.len() > self.max_bytes || self.held.len() >= self.max_chunks {
            out = std::mem::take(&mut self.held);
            self.bytes = 0;
        }
        if data.len() > self.max_bytes || self.max_chunks == 0 {
            out.push((stream, data));
        } else {
            self.bytes += data.len();
            self.held.push((stream, data));
        }
        out
    }
}

/// Uploads one attempt's output in the order it was produced. Each stream goes through its own
/// [`Redactor`], so a secret split across two chunks is still masked; small pieces are
/// gathered into larger chunks ([`Coalescer`]); chunks are numbered from 0 by `seq`, which
/// only advances when a chunk was stored. What is left when the run ends is held
/// ([`Carry`]) for the result to carry.
struct OutputUploader<'a> {
    api: &'a ApiClient,
    id: &'a str,
    path: String,
    seq: u64,
    /// Stdout's and stderr's redactors.
    redact: [Redactor; 2],
    coalesce: Coalescer,
    /// Output held at the end of the run, to go with the result.
    carry: Carry,
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
            carry: Carry::new(CARRY_BYTES, ResultReport::MAX_CHUNKS),
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
        // The run is over: what is left goes with the result, unless there is too much of it.
        let mut tail: Vec<(Stream, Vec<u8>)> = self.coalesce.flush().into_iter().collect();
        tail.push((Stream::Stdout, self.redact[0].finish()));
        tail.push((Stream::Stderr, self.redact[1].finish()));
        for (stream, data) in tail {
            for (stream, data) in self.carry.hold(stream, data) {
                self.send(stream, &data, cancel).await;
            }
        }
    }

    /// The held output as chunks numbered from the next `seq`, for the result to carry; they
    /// stay held until [`Self::upload_held`] or the end of the attempt.
    fn carried(&self) -> Vec<OutputChunk> {
        self.carry
            .held
            .iter()
            .zip(self.seq..)
            .map(|((stream, data), seq)| OutputChunk {
                seq,
                stream: *stream,
                data: String::from_utf8_lossy(data).into_owned(),
            })
            .collect()
    }

    /// Uploads the held output on the output endpoint (a server that does not take it with
    /// the result). An attempt taken away meanwhile has nothing left to cancel.
    async fn upload_held(&mut self) {
        let never = CancellationToken::new();
        for (stream, data) in std::mem::take(&mut self.carry.held) {
            self.send(stream, &data, &never).await;
        }
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
    fn the_end_of_the_output_is_held_for_the_result_within_its_bounds() {
        let mut c = Carry::new(10, 2);
        assert!(c.hold(Stream::Stdout, Vec::new()).is_empty());
        assert!(c.hold(Stream::Stdout, b"abcd".to_vec()).is_empty());
        assert!(c.hold(Stream::Stderr, b"ef".to_vec()).is_empty());
        // A third chunk pushes out the two held before it, in order.
        let out = c.hold(Stream::Stdout, b"g".to_vec());
        assert_eq!(
            out,
            vec![
                (Stream::Stdout, b"abcd".to_vec()),
                (Stream::Stderr, b"ef".to_vec())
            ]
        );
        assert_eq!(c.held, vec![(Stream::Stdout, b"g".to_vec())]);
        // Too many bytes push out what is held; a piece over the bound goes out itself.
        let out = c.hold(Stream::Stdout, b"0123456789".to_vec());
        assert_eq!(out, vec![(Stream::Stdout, b"g".to_vec())]);
        let out = c.hold(Stream::Stderr, b"0123456789X".to_vec());
        assert_eq!(
            out,
            vec![
                (Stream::Stdout, b"0123456789".to_vec()),
                (Stream::Stderr, b"0123456789X".to_vec())
            ]
        );
        assert!(c.held.is_empty());
    }

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
