//! Runs one job on this machine: `sh -c` or an argv, in its own process group, with its own
//! environment and working directory, a timeout, and cancellation that kills the whole group.
//! Output is streamed as chunks; the outcome is an exit code, a signal, a timeout, a
//! cancellation or a failure to start.
//!
//! The command is the task's own [`CommandSpec`] and chunks are tagged with the model's
//! [`Stream`]; [`ExecOutcome`] carries the exit code, signal or error that the agent reports as
//! an [`AttemptResult`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use flux_core::model::{AttemptResult, CommandSpec, Outcome, Stream};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How long a process group gets between SIGTERM and SIGKILL.
pub const KILL_GRACE: Duration = Duration::from_secs(2);
/// Largest chunk handed to the uploader.
const CHUNK: usize = 16 * 1024;
/// How long to keep reading output after the main process exited and its group was killed
/// (a process that left the group may still hold the pipes).
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct ExecSpec {
    pub command: CommandSpec,
    pub env: BTreeMap<String, String>,
    pub workdir: Option<PathBuf>,
    pub timeout: Option<Duration>,
    /// File that holds the job's process group id while it runs, so that an agent restarted
    /// after a crash can find and kill what its predecessor left running.
    pub track: Option<PathBuf>,
    /// Run the job as this user instead of the agent's (`--run-as`).
    pub run_as: Option<RunAs>,
}

/// The user jobs run as (`--run-as`): its uid and primary group, and what its environment
/// starts from.
#[derive(Debug, Clone)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// The user's supplementary groups (its primary group included), set by the exec shim.
    pub groups: Vec<u32>,
    pub home: PathBuf,
    pub shell: PathBuf,
    /// The flux-agent binary, which switches to the user and then executes the job
    /// ([`crate::harden::exec_as`]).
    pub shim: PathBuf,
}

/// `PATH` of a job run as another user (it inherits nothing from the agent).
const RUN_AS_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Output read from one of the job's streams.
#[derive(Debug)]
pub struct Chunk {
    pub stream: Stream,
    pub data: Vec<u8>,
}

/// How a run ended, with its exit code, signal or error (what [`AttemptResult`] reports;
/// [`ExecOutcome::into_result`] makes one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    Exited(i32),
    Signaled(i32),
    TimedOut,
    Cancelled,
    FailedToStart(String),
}

impl ExecOutcome {
    /// The result the agent reports for this outcome.
    pub fn into_result(self) -> AttemptResult {
        let (outcome, exit_code, signal, message) = match self {
            ExecOutcome::Exited(code) => (Outcome::Exited, Some(code), None, None),
            ExecOutcome::Signaled(sig) => (Outcome::Signaled, None, Some(sig), None),
            ExecOutcome::TimedOut => (Outcome::TimedOut, None, None, None),
            ExecOutcome::Cancelled => (Outcome::Cancelled, None, None, None),
            ExecOutcome::FailedToStart(m) => (Outcome::FailedToStart, None, None, Some(m)),
        };
        AttemptResult {
            outcome,
            exit_code,
            signal,
            message,
        }
    }
}

fn command(spec: &ExecSpec) -> Result<Command, String> {
    let (prog, args): (&str, Vec<&str>) = match &spec.command {
        CommandSpec::Shell(s) => ("/bin/sh", vec!["-c", s.as_str()]),
        CommandSpec::Argv(v) => {
            let (prog, args) = v.split_first().ok_or("empty argv")?;
            (prog.as_str(), args.iter().map(String::as_str).collect())
        }
    };
    let mut cmd = match &spec.run_as {
        // The shim sets the user's groups, gid and uid, then becomes the job (same pid and
        // process group): std can set a uid and gid but not supplementary groups.
        Some(u) => {
            let mut c = Command::new(&u.shim);
            c.arg(crate::harden::EXEC_AS)
                .arg(u.uid.to_string())
                .arg(u.gid.to_string())
                .arg(
                    u.groups
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(","),
                )
                .arg("--")
                .arg(prog)
                .args(&args);
            c
        }
        None => {
            let mut c = Command::new(prog);
            c.args(&args);
            c
        }
    };
    match &spec.run_as {
        // Another user: a clean environment of its own (the shim switches its uid, group and
        // supplementary groups), its home as the default working directory.
        Some(u) => {
            cmd.env_clear()
                .env("HOME", &u.home)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env("SHELL", &u.shell)
                .env("PATH", RUN_AS_PATH);
            if spec.workdir.is_none() && u.home.is_dir() {
                cmd.current_dir(&u.home);
            }
        }
        // The agent's own settings and credentials are not the job's business.
        None => {
            for (var, _) in std::env::vars_os() {
                if var.to_string_lossy().starts_with("FLUX_") {
                    cmd.env_remove(var);
                }
            }
        }
    }
    cmd.envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.workdir {
        cmd.current_dir(dir);
    }
    Ok(cmd)
}

fn signal_group(pgid: Pid, sig: Signal) {
    // ESRCH (the group is already gone) is the expected case after a clean exit.
    let _ = killpg(pgid, sig);
}

fn reader(
    mut r: impl AsyncRead + Unpin + Send + 'static,
    stream: Stream,
    tx: mpsc::Sender<Chunk>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = Chunk {
                        stream,
                        data: buf[..n].to_vec(),
                    };
                    if tx.send(chunk).await.is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Stops the group politely, then forcibly, and reaps the leader.
async fn terminate(child: &mut Child, pgid: Pid) -> Option<ExitStatus> {
    signal_group(pgid, Signal::SIGTERM);
    let status = match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(s) => s.ok(),
        Err(_) => None,
    };
    // Whether or not the leader left on SIGTERM, nothing of the group may outlive the job.
    signal_group(pgid, Signal::SIGKILL);
    match status {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    }
}

/// Runs the job to completion, sending output chunks to `out`.
pub async fn run(
    spec: ExecSpec,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> ExecOutcome {
    let mut cmd = match command(&spec) {
        Ok(c) => c,
        Err(e) => return ExecOutcome::FailedToStart(e),
    };
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return ExecOutcome::FailedToStart(e.to_string()),
    };
    let Some(pid) = child.id() else {
        return ExecOutcome::FailedToStart("process exited before it could be tracked".into());
    };
    let pgid = Pid::from_raw(pid as i32);
    if let Some(t) = &spec.track
        && let Err(e) = std::fs::write(t, pid.to_string())
    {
        tracing::warn!(file = %t.display(), error = %e, "cannot record the job's process group");
    }
    let readers = [
        child
            .stdout
            .take()
            .map(|r| reader(r, Stream::Stdout, out.clone())),
        child
            .stderr
            .take()
            .map(|r| reader(r, Stream::Stderr, out.clone())),
    ];
    drop(out);

    let deadline = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let outcome = tokio::select! {
        status = child.wait() => {
            // Background processes the job left in its group go with it.
            signal_group(pgid, Signal::SIGKILL);
            match status {
                Ok(s) => from_status(s),
                Err(e) => ExecOutcome::FailedToStart(format!("waiting for the process: {e}")),
            }
        }
        _ = deadline => {
            terminate(&mut child, pgid).await;
            ExecOutcome::TimedOut
        }
        _ = cancel.cancelled() => {
            terminate(&mut child, pgid).await;
            ExecOutcome::Cancelled
        }
    };
    for r in readers.into_iter().flatten() {
        let abort = r.abort_handle();
        if tokio::time::timeout(DRAIN, r).await.is_err() {
            abort.abort();
        }
    }
    if let Some(t) = &spec.track {
        let _ = std::fs::remove_file(t);
    }
    outcome
}

/// Stands in for a job without running anything (`flux-agent --simulate`): waits `run`, sends
/// `line` as its standard output and exits 0, unless cancelled first or `timeout` (the job's)
/// is shorter than `run`. A zero `run` involves no timer at all (a zero sleep still waits for
/// the timer's next millisecond tick).
pub async fn simulate(
    run: Duration,
    timeout: Duration,
    line: String,
    out: mpsc::Sender<Chunk>,
    cancel: CancellationToken,
) -> ExecOutcome {
    if !run.is_zero() {
        tokio::select! {
            _ = cancel.cancelled() => return ExecOutcome::Cancelled,
            _ = tokio::time::sleep(timeout), if timeout < run => return ExecOutcome::TimedOut,
            _ = tokio::time::sleep(run) => {}
        }
    } else if cancel.is_cancelled() {
        return ExecOutcome::Cancelled;
    }
    let chunk = Chunk {
        stream: Stream::Stdout,
        data: line.into_bytes(),
    };
    // The receiver only goes away when the attempt is abandoned.
    let _ = out.send(chunk).await;
    ExecOutcome::Exited(0)
}

/// An attempt recorded in the state directory by a previous agent process.
#[derive(Debug, PartialEq, Eq)]
pub struct Orphan {
    pub attempt: String,
    /// Whether its process group was still running (and was killed).
    pub killed: bool,
}

/// Kills the process groups recorded in `dir` by a previous agent process that died without
/// cleaning up (SIGKILL, crash, power loss). A group is killed only if its leader still carries
/// the attempt id in its environment, so a recycled pid is never hit. Returns every attempt
/// recorded there (each was launched, whether or not its process still ran).
pub fn reap_orphans(dir: &std::path::Path) -> Vec<Orphan> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for e in entries.flatten() {
        let path = e.path();
        let attempt = e.file_name().to_string_lossy().into_owned();
        if attempt.starts_with('.') || !flux_core::model::valid_attempt_id(&attempt) {
            continue; // the agent's own files (its session), never an attempt's
        }
        let pgid: Option<i32> = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        let killed = pgid.filter(|p| *p > 1).is_some_and(|pgid| {
            let marker = format!("FLUX_ATTEMPT_ID={attempt}");
            let ours = std::fs::read(format!("/proc/{pgid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()));
            if ours {
                signal_group(Pid::from_raw(pgid), Signal::SIGKILL);
            }
            ours
        });
        found.push(Orphan { attempt, killed });
        let _ = std::fs::remove_file(&path);
    }
    found
}

fn from_status(s: ExitStatus) -> ExecOutcome {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => ExecOutcome::Exited(c),
        (None, Some(sig)) => ExecOutcome::Signaled(sig),
        (None, None) => ExecOutcome::FailedToStart("unknown exit status".into()),
    }
}

#[cfg(test)]
mod tests {
    use flux_core::testing::pid_alive;

    use super::*;

    fn shell(s: &str) -> ExecSpec {
        ExecSpec {
            command: CommandSpec::Shell(s.into()),
            env: BTreeMap::new(),
            workdir: None,
            timeout: None,
            track: None,
            run_as: None,
        }
    }

    /// A shell job from `script`, where `{p}` stands for a file in a fresh directory that the
    /// job writes a pid to: the directory (kept while the test runs), the file and the job.
    fn with_pidfile(script: &str) -> (tempfile::TempDir, std::path::PathBuf, ExecSpec) {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let spec = shell(&script.replace("{p}", &pidfile.display().to_string()));
        (dir, pidfile, spec)
    }

    async fn collect(spec: ExecSpec, cancel: CancellationToken) -> (ExecOutcome, String, String) {
        let (tx, mut rx) = mpsc::channel(16);
        let run = tokio::spawn(run(spec, tx, cancel));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        while let Some(c) = rx.recv().await {
            match c.stream {
                Stream::Stdout => out.extend(c.data),
                Stream::Stderr => err.extend(c.data),
            }
        }
        (
            run.await.unwrap(),
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    async fn wait_dead(pid: i32) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while tokio::time::Instant::now() < deadline {
            if !pid_alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn exit_code_streams_env_and_workdir() {
        let dir = tempfile::tempdir().unwrap();
        let mut spec = shell("echo out-$FOO; pwd; echo err >&2; exit 7");
        spec.env.insert("FOO".into(), "bar".into());
        spec.workdir = Some(dir.path().to_path_buf());
        let (o, out, err) = collect(spec, CancellationToken::new()).await;
        assert_eq!(o, ExecOutcome::Exited(7));
        let canon = dir.path().canonicalize().unwrap();
        assert_eq!(out, format!("out-bar\n{}\n", canon.display()));
        assert_eq!(err, "err\n");
    }

    #[tokio::test]
    async fn argv_is_not_interpreted_by_a_shell() {
        let spec = ExecSpec {
            command: CommandSpec::Argv(vec!["echo".into(), "$HOME;".into(), "a b".into()]),
            ..shell("")
        };
        let (o, out, _) = collect(spec, CancellationToken::new()).await;
        assert_eq!(o, ExecOutcome::Exited(0));
        assert_eq!(out, "$HOME; a b\n");
    }

    #[tokio::test]
    async fn missing_program_and_workdir_fail_to_start() {
        let spec = ExecSpec {
            command: CommandSpec::Argv(vec!["/nonexistent/flux-prog".into()]),
            ..shell("")
        };
        let (o, _, _) = collect(spec, CancellationToken::new()).await;
        assert!(matches!(o, ExecOutcome::FailedToStart(_)), "{o:?}");
        let mut spec = shell("true");
        spec.workdir = Some("/nonexistent/dir".into());
        let (o, _, _) = collect(spec, CancellationToken::new()).await;
        assert!(matches!(o, ExecOutcome::FailedToStart(_)), "{o:?}");
    }

    #[tokio::test]
    async fn signal_is_reported() {
        let (o, _, _) = collect(shell("kill -9 $$"), CancellationToken::new()).await;
        assert_eq!(o, ExecOutcome::Signaled(9));
    }

    /// Cancelling kills the whole group, including a grandchild that ignores SIGTERM.
    #[tokio::test]
    async fn cancel_kills_the_whole_group() {
        let (_dir, pidfile, spec) = with_pidfile(
            "sh -c 'trap \"\" TERM; echo $$ > {p}.tmp; mv {p}.tmp {p}; exec sleep 600' & wait",
        );
        let cancel = CancellationToken::new();
        let task = tokio::spawn(collect(spec, cancel.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile) {
                break s.trim().parse().unwrap();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "grandchild never started"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(pid_alive(pid));
        cancel.cancel();
        let (o, _, _) = task.await.unwrap();
        assert_eq!(o, ExecOutcome::Cancelled);
        assert!(
            wait_dead(pid).await,
            "grandchild {pid} survived cancellation"
        );
    }

    /// A simulated run of `run` with `timeout` printing `hi`, cancelled before it starts if
    /// `cancelled`: its outcome and what it printed.
    async fn simulated(
        run: Duration,
        timeout: Duration,
        cancelled: bool,
    ) -> (ExecOutcome, mpsc::Receiver<Chunk>) {
        let (tx, rx) = mpsc::channel(4);
        let cancel = CancellationToken::new();
        if cancelled {
            cancel.cancel();
        }
        (simulate(run, timeout, "hi\n".into(), tx, cancel).await, rx)
    }

    #[tokio::test]
    async fn simulated_runs_print_their_line_or_are_cancelled() {
        let (o, mut rx) = simulated(Duration::from_millis(5), Duration::from_secs(60), false).await;
        assert_eq!(o, ExecOutcome::Exited(0));
        let c = rx.recv().await.unwrap();
        assert_eq!((c.stream, c.data), (Stream::Stdout, b"hi\n".to_vec()));
        assert!(rx.recv().await.is_none());

        let (o, mut rx) = simulated(Duration::from_secs(600), Duration::from_secs(900), true).await;
        assert_eq!(o, ExecOutcome::Cancelled);
        assert!(rx.recv().await.is_none());

        // A job whose timeout is shorter than the simulated run times out, printing nothing.
        let (o, mut rx) =
            simulated(Duration::from_secs(600), Duration::from_millis(5), false).await;
        assert_eq!(o, ExecOutcome::TimedOut);
        assert!(rx.recv().await.is_none());
    }

    /// `--simulate-run-ms 0`: the simulated job is done on its first poll, without waiting for
    /// a timer tick.
    #[tokio::test]
    async fn a_zero_simulated_run_finishes_at_once() {
        let (tx, mut rx) = mpsc::channel(4);
        let run = simulate(
            Duration::ZERO,
            Duration::from_secs(60),
            "hi\n".into(),
            tx,
            CancellationToken::new(),
        );
        let mut run = std::pin::pin!(run);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let o = std::future::Future::poll(run.as_mut(), &mut cx);
        assert_eq!(o, std::task::Poll::Ready(ExecOutcome::Exited(0)));
        assert_eq!(rx.recv().await.unwrap().data, b"hi\n".to_vec());
        let (o, mut rx) = simulated(Duration::ZERO, Duration::from_secs(60), true).await;
        assert_eq!(o, ExecOutcome::Cancelled);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn timeout_kills_and_reports() {
        let mut spec = shell("sleep 600");
        spec.timeout = Some(Duration::from_millis(200));
        let (o, _, _) = collect(spec, CancellationToken::new()).await;
        assert_eq!(o, ExecOutcome::TimedOut);
    }

    /// What a crashed agent left running is found through its tracking file and killed; a file
    /// naming a process that is not the attempt's is ignored.
    #[tokio::test]
    async fn orphans_of_a_previous_agent_are_reaped() {
        let state = tempfile::tempdir().unwrap();
        let (_dir, pidfile, mut spec) = with_pidfile("echo $$ > {p}; exec sleep 600");
        spec.env.insert("FLUX_ATTEMPT_ID".into(), "j-1.0001".into());
        spec.track = Some(state.path().join("j-1.0001"));
        // Run it, then forget the run (as a SIGKILLed agent would) without cancelling it.
        let (tx, _rx) = mpsc::channel(16);
        let task = tokio::spawn(run(spec, tx, CancellationToken::new()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let pid: i32 = loop {
            if let Ok(s) = std::fs::read_to_string(&pidfile)
                && let Ok(p) = s.trim().parse()
            {
                break p;
            }
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        // A stale file pointing at an unrelated live process (this test) must not kill it.
        std::fs::write(
            state.path().join("j-2.0001"),
            std::process::id().to_string(),
        )
        .unwrap();
        let mut found = reap_orphans(state.path());
        found.sort_by(|a, b| a.attempt.cmp(&b.attempt));
        let orphan = |attempt: &str, killed| Orphan {
            attempt: attempt.into(),
            killed,
        };
        // Both were launched by the previous process; only the attempt's own group is killed.
        assert_eq!(found, [orphan("j-1.0001", true), orphan("j-2.0001", false)]);
        assert!(wait_dead(pid).await, "orphan {pid} survived");
        assert_eq!(std::fs::read_dir(state.path()).unwrap().count(), 0);
        task.abort();
    }

    /// A background process left behind by a job that exited is killed with the group, and
    /// does not keep the job open through the pipes it inherited.
    #[tokio::test]
    async fn background_leftovers_are_killed_after_exit() {
        let (_dir, pidfile, spec) = with_pidfile("sleep 600 & echo $! > {p}; exit 3");
        let (o, _, _) = collect(spec, CancellationToken::new()).await;
        assert_eq!(o, ExecOutcome::Exited(3));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            wait_dead(pid).await,
            "background sleep {pid} outlived its job"
        );
    }
}
