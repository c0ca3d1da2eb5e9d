//! One agent's conversation with the control plane: it registers (saying what it still runs),
//! heartbeats at the interval the control plane asks for, long-polls for tasks and hands each
//! new task to [`crate::attempt`]; cancellations arrive with heartbeat replies and polls.
//! Every call is retried with full-jitter backoff ([`with_retry`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use flux_core::client::{ApiClient, ClientError, POLL_HEARD_HEADER};
use flux_core::model::{Heartbeat, HeartbeatReply, RegisterAgent, Task, valid_attempt_id};
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::Args;
use crate::executor::RunAs;
use crate::facts::{self, FactsTracker};
use crate::retry::{Backoff, stopped_during};

/// File in the state directory holding the registration's session secret (mode 0600).
const SESSION_FILE: &str = ".session";

/// The session kept in `dir` by an earlier run of this agent, if any.
pub(crate) fn load_session(dir: &Path) -> Option<String> {
    let s = std::fs::read_to_string(dir.join(SESSION_FILE)).ok()?;
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_string())
}

/// Keeps the session in `dir`, readable by the agent's user only, replacing the old one in
/// one step.
fn save_session(dir: &Path, secret: &str) -> std::io::Result<()> {
    flux_core::files::replace_private(&dir.join(SESSION_FILE), secret.as_bytes())
}

/// Whether the control plane refused a call because this agent does not hold the node's
/// registration (another live agent process does, or the session is stale).
pub(crate) fn is_session_conflict(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: StatusCode::CONFLICT, code, .. } if code == "session_conflict")
}

/// Whether the control plane refused a body because it does not know the `facts` field (one
/// older than facts).
fn refuses_facts(e: &ClientError) -> bool {
    matches!(e, ClientError::Api { status: StatusCode::UNPROCESSABLE_ENTITY, message, .. }
        if message.contains("unknown field `facts`"))
}

/// Attempts running here, with the token that cancels each.
pub(crate) type Running = Arc<Mutex<HashMap<String, CancellationToken>>>;

/// How tasks are carried out.
pub(crate) enum Exec {
    /// Real processes (`sh -c` or an argv) through [`executor::run`].
    Real {
        /// Where running jobs' process groups are recorded (see `--state-dir`).
        state_dir: Option<PathBuf>,
        /// The user jobs run as (see `--run-as`).
        run_as: Option<RunAs>,
    },
    /// No process: wait `run`, print one line, exit 0 (see `--simulate`).
    Simulated { run: Duration },
}

/// What every agent of this process has in common.
pub(crate) struct Profile {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) slots: u32,
    pub(crate) hostname: Option<String>,
    pub(crate) poll_secs: u64,
    /// How often facts are read again (real agents only; simulated ones report none).
    pub(crate) facts_every: Duration,
    /// How long a run goes before its start is reported.
    pub(crate) start_after: Duration,
    pub(crate) exec: Exec,
}

impl Profile {
    pub(crate) fn new(args: &Args, exec: Exec) -> Profile {
        Profile {
            labels: args.labels.iter().cloned().collect(),
            slots: args.slots,
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string()),
            poll_secs: args.poll_secs,
            facts_every: Duration::from_secs(args.facts_interval),
            start_after: args.start_after,
            exec,
        }
    }
}

/// One agent: its client, identity, the attempts it runs and the heartbeat interval the
/// control plane asked for.
pub(crate) struct Agent {
    pub(crate) api: ApiClient,
    /// Node id from the agent token; the server checks the token, this is for logs and jobs.
    pub(crate) node_id: String,
    pub(crate) profile: Arc<Profile>,
    pub(crate) running: Running,
    heartbeat: Mutex<Duration>,
    polled: Mutex<Polled>,
    facts: FactsTracker,
}

/// What the agent knows of its polls as heartbeats.
#[derive(Default)]
struct Polled {
    /// The control plane counts a poll's arrival as a heartbeat (its last poll reply said so).
    counted: bool,
    /// When the latest poll not known to have failed was sent: it is in flight (and a poll
    /// that does not reach the control plane fails by its timeout) or came back.
    sent: Option<tokio::time::Instant>,
}

/// Whether the heartbeat due now is sent: always while attempts run (the control plane checks
/// them and answers cancellations) or facts changed, and otherwise unless a poll the control
/// plane counts as a heartbeat was sent less than one interval ago (`poll_age`). When it is not
/// sent, the answer is how long until that poll is one interval old: the heartbeat is looked at
/// again then (not a whole interval later), so a poll that stalls on its way leaves the agent
/// silent for about one interval, as a heartbeat would.
fn heartbeat_due(
    every: Duration,
    poll_age: Option<Duration>,
    running: bool,
    facts_changed: bool,
) -> Result<(), Duration> {
    match poll_age {
        Some(age) if !running && !facts_changed && age < every => {
            Err((every - age).max(MIN_HEARTBEAT_RECHECK))
        }
        _ => Ok(()),
    }
}

/// Shortest wait before a skipped heartbeat is looked at again.
const MIN_HEARTBEAT_RECHECK: Duration = Duration::from_millis(10);

/// How long a poll may wait: the agent's `--poll-secs`, and once polls count as heartbeats
/// less than one heartbeat interval (by a quarter of it, at most 250 ms: more than a poll's
/// round trip, so that one is in flight whenever a heartbeat falls due), so that an idle
/// agent's polls alone keep it heard from. Intervals under 100 ms leave polls as asked (and
/// heartbeats on): polls that short would only spin.
fn poll_wait(poll_secs: u64, every: Duration, counted: bool) -> Duration {
    let asked = Duration::from_secs(poll_secs);
    if counted && every >= Duration::from_millis(100) {
        asked.min(every - (every / 4).min(Duration::from_millis(250)))
    } else {
        asked
    }
}

/// A task poll's path: `wait_ms` only where polls count (a control plane older than that
/// refuses it and takes `wait_secs`).
fn poll_path(after: u64, wait: Duration, counted: bool) -> String {
    if counted {
        format!("/v1/agent/tasks?after={after}&wait_ms={}", wait.as_millis())
    } else {
        format!("/v1/agent/tasks?after={after}&wait_secs={}", wait.as_secs())
    }
}

fn running_ids(running: &Running) -> Vec<String> {
    let mut v: Vec<String> = running
        .lock()
        .expect("running map")
        .keys()
        .cloned()
        .collect();
    v.sort();
    v
}

fn cancel_attempts(running: &Running, ids: &[String]) {
    let map = running.lock().expect("running map");
    for id in ids {
        if let Some(t) = map.get(id) {
            tracing::info!(attempt = %id, "cancel requested by the control plane");
            t.cancel();
        }
    }
}

/// Retries `f` on transport errors and 429/5xx with full-jitter backoff; gives up on other API
/// errors (returned) or when `stop` fires.
pub(crate) async fn with_retry<T, F, Fut>(
    stop: &CancellationToken,
    what: &str,
    mut f: F,
) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut retry = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        match f().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let retryable = match &e {
                    ClientError::Transport { .. } | ClientError::Decode { .. } => true,
                    ClientError::Api { status, .. } => {
                        *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
                    }
                    ClientError::Config(_) => false,
                };
                if !retryable {
                    return Err(e);
                }
                let mut delay = retry.next_delay();
                if let ClientError::Api {
                    retry_after: Some(s),
                    ..
                } = &e
                {
                    delay = delay.max(Duration::from_secs(*s));
                }
                tracing::warn!(error = %e, ?delay, "{what} failed; retrying");
                if stopped_during(stop, delay).await {
                    return Err(e);
                }
            }
        }
    }
}

impl Agent {
    pub(crate) fn new(api: ApiClient, node_id: String, profile: Arc<Profile>) -> Agent {
        Agent {
            api,
            node_id,
            profile,
            running: Arc::default(),
            heartbeat: Mutex::new(Duration::from_secs(2)),
            polled: Mutex::default(),
            facts: FactsTracker::default(),
        }
    }

    /// Waits (until `deadline` at most) for the running tasks to report and go away.
    pub(crate) async fn wait_idle(&self, deadline: tokio::time::Instant) {
        while !self.running.lock().expect("running map").is_empty()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether this agent reports facts (simulated agents do not).
    fn reports_facts(&self) -> bool {
        matches!(self.profile.exec, Exec::Real { .. })
    }

    pub(crate) async fn register(&self, stop: &CancellationToken) -> Result<(), ClientError> {
        let facts = if self.reports_facts() && !self.facts.is_unsupported() {
            Some(facts::collect_async().await)
        } else {
            None
        };
        let req = RegisterAgent {
            labels: self.profile.labels.clone(),
            slots: Some(self.profile.slots),
            hostname: self.profile.hostname.clone(),
            version: Some(env!("CARGO_PKG_VERSION").to_string()),
            running: running_ids(&self.running),
            facts: facts.clone(),
        };
        let mut reply: Result<HeartbeatReply, ClientError> = with_retry(stop, "register", || {
            self.api.post("/v1/agent/register", &req)
        })
        .await;
        if let Err(e) = &reply
            && refuses_facts(e)
        {
            // A control plane older than facts (during a rolling upgrade): register without.
            tracing::warn!(error = %e, "the control plane takes no facts; registering without");
            self.facts.unsupported();
            let req = RegisterAgent { facts: None, ..req };
            reply = with_retry(stop, "register", || {
                self.api.post("/v1/agent/register", &req)
            })
            .await;
        } else if let (Ok(_), Some(f)) = (&reply, facts) {
            self.facts.accepted(f);
        }
        let reply = reply?;
        if let Some(secret) = &reply.session {
            self.api.set_session(Some(secret.clone()));
            if let Exec::Real {
                state_dir: Some(dir),
                ..
            } = &self.profile.exec
                && let Err(e) = save_session(dir, secret)
            {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot keep the session");
            }
        }
        self.apply_reply(&reply);
        match self.profile.exec {
            Exec::Real { .. } => {
                tracing::info!(server = %self.api.server(), node = %self.node_id, "registered")
            }
            Exec::Simulated { .. } => {
                tracing::debug!(server = %self.api.server(), node = %self.node_id, "registered")
            }
        }
        Ok(())
    }

    fn apply_reply(&self, reply: &HeartbeatReply) {
        if reply.heartbeat_interval_ms > 0 {
            *self.heartbeat.lock().expect("heartbeat") =
                Duration::from_millis(reply.heartbeat_interval_ms);
        }
        cancel_attempts(&self.running, &reply.cancel);
    }

    pub(crate) async fn heartbeat_loop(self: Arc<Self>, stop: CancellationToken) {
        let mut next_facts = tokio::time::Instant::now() + self.profile.facts_every;
        let mut current: Option<flux_core::model::Facts> = None;
        let mut recheck: Option<Duration> = None;
        loop {
            let every = *self.heartbeat.lock().expect("heartbeat");
            if stopped_during(&stop, recheck.take().unwrap_or(every)).await {
                return;
            }
            if self.reports_facts() && tokio::time::Instant::now() >= next_facts {
                current = Some(facts::collect_async().await);
                next_facts = tokio::time::Instant::now() + self.profile.facts_every;
            }
            let hb = Heartbeat {
                running: running_ids(&self.running),
                facts: current.as_ref().and_then(|f| self.facts.to_send(f)),
            };
            let poll_age = {
                let p = self.polled.lock().expect("polled");
                p.sent.filter(|_| p.counted).map(|t| t.elapsed())
            };
            if let Err(wait) =
                heartbeat_due(every, poll_age, !hb.running.is_empty(), hb.facts.is_some())
            {
                recheck = Some(wait);
                continue;
            }
            match self
                .api
                .post::<HeartbeatReply, _>("/v1/agent/heartbeat", &hb)
                .await
            {
                Ok(reply) => {
                    if let Some(f) = hb.facts {
                        tracing::info!("facts changed; sent");
                        self.facts.accepted(f);
                    }
                    self.apply_reply(&reply)
                }
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) || is_session_conflict(&e) => {
                    // The control plane forgot us (restored from backup, say), or our session is
                    // no longer the node's: register again (refused while another live agent
                    // process holds the node).
                    tracing::warn!(error = %e, "heartbeat refused; registering again");
                    let _ = self.register(&stop).await;
                }
                Err(e) if refuses_facts(&e) => {
                    // A control plane older than facts: send none, and heartbeat again now.
                    tracing::warn!(error = %e, "the control plane takes no facts; sending none");
                    self.facts.unsupported();
                    let hb = Heartbeat { facts: None, ..hb };
                    match self
                        .api
                        .post::<HeartbeatReply, _>("/v1/agent/heartbeat", &hb)
                        .await
                    {
                        Ok(reply) => self.apply_reply(&reply),
                        Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
                    }
                }
                Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
            }
        }
    }

    pub(crate) async fn poll_loop(self: Arc<Self>, stop: CancellationToken) -> Result<()> {
        let mut after = 0u64;
        let mut retry = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            let every = *self.heartbeat.lock().expect("heartbeat");
            let (wait, counted) = {
                let mut p = self.polled.lock().expect("polled");
                p.sent = Some(tokio::time::Instant::now());
                (
                    poll_wait(self.profile.poll_secs, every, p.counted),
                    p.counted,
                )
            };
            let path = poll_path(after, wait, counted);
            let timeout = wait + Duration::from_secs(15);
            let polled = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                r = self.api.call_headers::<Vec<Task>>(Method::GET, &path, None, timeout) => r,
            };
            if polled.is_err() {
                // Heartbeats resume, and the next poll asks as any control plane understands
                // (one behind a failover may be older and refuse `wait_ms`).
                *self.polled.lock().expect("polled") = Polled::default();
            }
            match polled {
                Ok((tasks, headers)) => {
                    retry.reset();
                    self.heard_by_poll(&headers);
                    for t in tasks {
                        after = after.max(t.revision);
                        self.handle(t, &stop);
                    }
                }
                Err(
                    e @ ClientError::Api {
                        status: StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN,
                        ..
                    },
                ) => {
                    return Err(anyhow::anyhow!(
                        "the control plane refused this agent's token: {e}"
                    ));
                }
                Err(e) => {
                    let delay = retry.next_delay();
                    tracing::warn!(error = %e, ?delay, "poll failed; reconnecting");
                    if stopped_during(&stop, delay).await {
                        return Ok(());
                    }
                    // Re-register so the control plane learns what is still running here.
                    if self.register(&stop).await.is_err() {
                        continue;
                    }
                }
            }
        }
    }

    /// Notes from a poll's reply whether the control plane counted the poll as a heartbeat,
    /// and the interval it asks for.
    fn heard_by_poll(&self, headers: &reqwest::header::HeaderMap) {
        let interval = headers
            .get(POLL_HEARD_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0);
        if let Some(ms) = interval {
            *self.heartbeat.lock().expect("heartbeat") = Duration::from_millis(ms);
        }
        self.polled.lock().expect("polled").counted = interval.is_some();
    }

    fn handle(self: &Arc<Self>, task: Task, stop: &CancellationToken) {
        // The id names a file in the state directory and a URL path segment: only ids made
        // the way the server makes them are acted on.
        if !valid_attempt_id(&task.attempt_id) {
            let shown: String = task.attempt_id.chars().take(80).collect();
            tracing::warn!(attempt = ?shown, "ignoring a task whose attempt id is not valid");
            return;
        }
        if task.cancel {
            cancel_attempts(&self.running, std::slice::from_ref(&task.attempt_id));
            return;
        }
        let token = {
            let mut map = self.running.lock().expect("running map");
            if map.contains_key(&task.attempt_id) {
                return;
            }
            let t = stop.child_token();
            map.insert(task.attempt_id.clone(), t.clone());
            t
        };
        let me = self.clone();
        tokio::spawn(async move {
            let id = task.attempt_id.clone();
            me.execute(task, token).await;
            me.running.lock().expect("running map").remove(&id);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flux_core::client::TlsOptions;
    use flux_core::model::CommandSpec;

    #[test]
    fn an_idle_agent_heartbeats_only_when_no_counted_poll_was_sent_within_the_interval() {
        let every = Duration::from_secs(30);
        let s = Duration::from_secs;
        // No counted poll (a control plane that does not count polls, or the last one failed).
        assert_eq!(heartbeat_due(every, None, false, false), Ok(()));
        // A poll sent 10 s ago stands for the heartbeat, looked at again when it is 30 s old;
        // one sent 30 s ago does not.
        assert_eq!(heartbeat_due(every, Some(s(10)), false, false), Err(s(20)));
        assert_eq!(heartbeat_due(every, Some(s(30)), false, false), Ok(()));
        assert_eq!(heartbeat_due(every, Some(s(31)), false, false), Ok(()));
        let just = every - Duration::from_millis(1);
        assert_eq!(
            heartbeat_due(every, Some(just), false, false),
            Err(MIN_HEARTBEAT_RECHECK)
        );
        // Running attempts and changed facts go with a heartbeat whatever the polls.
        assert_eq!(heartbeat_due(every, Some(s(1)), true, false), Ok(()));
        assert_eq!(heartbeat_due(every, Some(s(1)), false, true), Ok(()));
    }

    #[test]
    fn counted_polls_wait_less_than_one_heartbeat_interval() {
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        assert_eq!(poll_wait(25, s(30), true), s(25));
        assert_eq!(poll_wait(25, s(10), true), ms(9750));
        assert_eq!(poll_wait(25, s(2), true), ms(1750));
        assert_eq!(poll_wait(25, ms(200), true), ms(150));
        assert_eq!(poll_wait(25, ms(50), true), s(25));
        // What an older control plane understands until polls are known to count (again,
        // after a failed poll resets what the agent knows).
        assert_eq!(
            poll_path(7, poll_wait(25, s(2), false), Polled::default().counted),
            "/v1/agent/tasks?after=7&wait_secs=25"
        );
        assert_eq!(
            poll_path(7, poll_wait(25, s(2), true), true),
            "/v1/agent/tasks?after=7&wait_ms=1750"
        );
        // Until the control plane says it counts polls, they wait as asked.
        assert_eq!(poll_wait(25, s(10), false), s(25));
        assert_eq!(poll_wait(5, ms(250), false), s(5));
    }

    #[test]
    fn a_control_plane_without_facts_is_recognised_by_its_refusal() {
        let refusal = |status, message: &str| ClientError::Api {
            status,
            code: "invalid".into(),
            message: message.into(),
            retry_after: None,
        };
        // What serde (behind fluxd's JSON extractor) says of a field it does not know.
        #[derive(serde::Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct OldRegister {
            labels: Option<u8>,
        }
        let message = serde_json::from_str::<OldRegister>(r#"{"facts": {}}"#)
            .unwrap_err()
            .to_string();
        assert!(
            refuses_facts(&refusal(StatusCode::UNPROCESSABLE_ENTITY, &message)),
            "{message}"
        );
        assert!(!refuses_facts(&refusal(
            StatusCode::UNPROCESSABLE_ENTITY,
            "facts.os: too long"
        )));
        assert!(!refuses_facts(&refusal(StatusCode::BAD_REQUEST, &message)));
    }

    fn agent(state_dir: &Path) -> Arc<Agent> {
        // Nothing listens there: a task that got as far as its start call would never run.
        let api = ApiClient::new(
            vec!["https://127.0.0.1:9".into()],
            None,
            &TlsOptions::default(),
        )
        .unwrap();
        let profile = Profile {
            labels: BTreeMap::new(),
            slots: 1,
            hostname: None,
            poll_secs: 1,
            facts_every: Duration::from_secs(60),
            start_after: Duration::from_millis(100),
            exec: Exec::Real {
                state_dir: Some(state_dir.to_path_buf()),
                run_as: None,
            },
        };
        Arc::new(Agent::new(api, "n1".into(), Arc::new(profile)))
    }

    fn task(attempt_id: &str) -> Task {
        Task {
            attempt_id: attempt_id.into(),
            job_id: "j-1".into(),
            command: CommandSpec::Shell("true".into()),
            env: BTreeMap::new(),
            secret_env: BTreeMap::new(),
            workdir: None,
            timeout_secs: 5,
            cancel: false,
            revision: 1,
            registration: None,
        }
    }

    /// A task whose attempt id a server made up (a path, a dot segment, an encoded slash) is
    /// neither run nor tracked; a well-formed one is taken on.
    #[tokio::test]
    async fn tasks_with_bad_attempt_ids_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let a = agent(dir.path());
        let stop = CancellationToken::new();
        for bad in [
            "../../etc/x.1",
            "..",
            "a/b.1",
            ".session",
            "j%2F..1",
            "",
            "j-1",
        ] {
            a.handle(task(bad), &stop);
            assert!(running_ids(&a.running).is_empty(), "{bad:?} was taken on");
        }
        a.handle(task("j-1.1"), &stop);
        assert_eq!(running_ids(&a.running), vec!["j-1.1".to_string()]);
        stop.cancel();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_session_is_kept_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_session(dir.path()), None);
        let secret = "ab".repeat(32);
        save_session(dir.path(), &secret).unwrap();
        let mode = std::fs::metadata(dir.path().join(SESSION_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(load_session(dir.path()), Some(secret));
        std::fs::write(dir.path().join(SESSION_FILE), "not a session").unwrap();
        assert_eq!(load_session(dir.path()), None);
    }
}
