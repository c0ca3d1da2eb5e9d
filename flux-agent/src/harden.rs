//! What keeps jobs away from the agent's credentials:
//! - the agent is undumpable (`PR_SET_DUMPABLE` 0): processes of its user without
//!   `CAP_SYS_PTRACE` cannot read its memory or `/proc/<pid>/environ`;
//! - a token given through `FLUX_TOKEN` does not stay in its environment: the agent
//!   re-executes itself without it and receives the token through a pipe on standard input
//!   (`/proc/<pid>/environ` shows the environment the process image started with, which no
//!   in-process change can scrub);
//! - with `--run-as USER`, jobs run under another uid and group, so the token file (mode 0600,
//!   owned by the agent's user) and the agent's `/proc` entries are closed to them.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};

use crate::executor::RunAs;

/// Marks the re-executed agent: its token waits on standard input.
const TOKEN_ON_STDIN: &str = "FLUX_AGENT_TOKEN_ON_STDIN";
/// Longest token handed over (far above a real one; a pipe holds 64 KiB unread).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Makes this process undumpable (it resets on exec, so each image calls it).
pub fn undumpable() -> Result<()> {
    nix::sys::prctl::set_dumpable(false).context("making the agent undumpable (PR_SET_DUMPABLE)")
}

/// When `FLUX_TOKEN` is set, re-executes this program without it, handing the token over
/// through a pipe as standard input; it does not return then, unless the re-execution fails.
/// In the re-executed process, returns the token read from standard input.
pub fn token_out_of_environment() -> Result<Option<String>> {
    if std::env::var_os(TOKEN_ON_STDIN).is_some_and(|v| v == "1") {
        let mut t = String::new();
        std::io::stdin()
            .take(MAX_TOKEN_BYTES as u64 + 1)
            .read_to_string(&mut t)
            .context("reading the token handed over on standard input")?;
        let t = t.trim();
        if t.is_empty() || t.len() > MAX_TOKEN_BYTES {
            bail!("no token arrived on standard input");
        }
        return Ok(Some(t.to_string()));
    }
    let Some(token) = std::env::var_os("FLUX_TOKEN") else {
        return Ok(None);
    };
    let token = token
        .into_string()
        .map_err(|_| anyhow!("FLUX_TOKEN is not UTF-8"))?;
    if token.len() > MAX_TOKEN_BYTES {
        bail!("FLUX_TOKEN is longer than {MAX_TOKEN_BYTES} bytes");
    }
    let (read, write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("creating a pipe")?;
    {
        // Written whole before the exec (it fits in the pipe) and closed: the new image reads
        // the token, then the end of the pipe.
        let mut w = std::fs::File::from(write);
        w.write_all(token.as_bytes())
            .context("handing the token over")?;
    }
    let mut args = std::env::args_os();
    let err = Command::new("/proc/self/exe")
        .arg0(args.next().unwrap_or_default())
        .args(args)
        .env_remove("FLUX_TOKEN")
        .env(TOKEN_ON_STDIN, "1")
        .stdin(Stdio::from(read))
        .exec();
    Err(anyhow!(err).context("re-executing the agent without FLUX_TOKEN in its environment"))
}

/// Warns when the token file can be read by other users than its owner.
pub fn warn_if_shared(path: &Path) {
    if let Ok(m) = std::fs::metadata(path)
        && m.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", m.permissions().mode() & 0o777),
            "the token file is readable by other users; make it 0600"
        );
    }
}

/// Creates `dir` (if needed) and makes it private to the agent's user: it holds the session
/// secret and the job tracking files.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Resolves `--run-as USER`; refuses when this process could not switch to it.
pub fn run_as(name: &str) -> Result<RunAs> {
    let user = nix::unistd::User::from_name(name)
        .with_context(|| format!("looking up user {name:?}"))?
        .ok_or_else(|| anyhow!("--run-as: no user {name:?}"))?;
    let euid = nix::unistd::geteuid();
    if !euid.is_root() && user.uid != euid {
        bail!(
            "--run-as {name} needs the agent to run as root (it runs as uid {euid}); without \
             --run-as, jobs run as the agent's own user"
        );
    }
    let cname = std::ffi::CString::new(name.as_bytes())
        .map_err(|_| anyhow!("--run-as: {name:?} is not a user name"))?;
    let groups = nix::unistd::getgrouplist(&cname, user.gid)
        .with_context(|| format!("looking up the groups of {name:?}"))?
        .into_iter()
        .map(|g| g.as_raw())
        .collect();
    Ok(RunAs {
        name: user.name,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        groups,
        home: user.dir,
        shell: user.shell,
        // This very binary, even if its file was replaced by an upgrade since it started.
        shim: PathBuf::from("/proc/self/exe"),
    })
}

/// The first argument that makes flux-agent the exec shim of `--run-as`.
pub const EXEC_AS: &str = "__exec-as";

/// The exec shim: `flux-agent __exec-as UID GID GROUPS -- PROG ARGS...` sets the
/// supplementary groups (comma-separated gids), the gid and the uid, checks that the switch
/// cannot be undone, and replaces itself with PROG (searched in the `PATH` it was given).
/// Returns only on failure, with exit status 127 (as a shell does for a command it cannot
/// run) and the reason on stderr, which the job's output carries.
pub fn exec_as(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    match try_exec_as(args) {
        Ok(never) => match never {},
        Err(e) => {
            eprintln!("flux-agent: cannot run the job as its user: {e:#}");
            std::process::ExitCode::from(127)
        }
    }
}

fn try_exec_as(args: &[std::ffi::OsString]) -> Result<std::convert::Infallible> {
    use nix::unistd::{Gid, Uid};
    use std::os::unix::ffi::OsStrExt;
    let text = |i: usize| -> Result<&str> {
        args.get(i)
            .and_then(|a| a.to_str())
            .ok_or_else(|| anyhow!("argument {i} is missing"))
    };
    let uid: u32 = text(0)?.parse().context("uid")?;
    let gid: u32 = text(1)?.parse().context("gid")?;
    let groups: Vec<Gid> = text(2)?
        .split(',')
        .filter(|g| !g.is_empty())
        .map(|g| g.parse().map(Gid::from_raw))
        .collect::<Result<_, _>>()
        .context("groups")?;
    if text(3)? != "--" {
        bail!("expected -- before the command");
    }
    let argv: Vec<std::ffi::CString> = args[4..]
        .iter()
        .map(|a| std::ffi::CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("an argument holds a NUL byte")?;
    let prog = argv.first().ok_or_else(|| anyhow!("no command"))?;
    nix::unistd::setgroups(&groups).context("setgroups")?;
    nix::unistd::setgid(Gid::from_raw(gid)).context("setgid")?;
    nix::unistd::setuid(Uid::from_raw(uid)).context("setuid")?;
    if uid != 0 && nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        bail!("the switch to uid {uid} could be undone");
    }
    let e = nix::unistd::execvp(prog, &argv).unwrap_err();
    Err(anyhow!("{}: {e}", prog.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shim refuses malformed arguments before it changes anything.
    #[test]
    fn the_exec_shim_refuses_malformed_arguments() {
        let args = |v: &[&str]| -> Vec<std::ffi::OsString> { v.iter().map(Into::into).collect() };
        for (bad, why) in [
            (args(&[]), "argument 0 is missing"),
            (args(&["x", "1", "", "--", "true"]), "uid"),
            (args(&["1", "1", "a,b", "--", "true"]), "groups"),
            (args(&["1", "1", "", "true"]), "expected --"),
            (args(&["1", "1", "", "--"]), "no command"),
        ] {
            let e = try_exec_as(&bad).unwrap_err();
            assert!(format!("{e:#}").contains(why), "{bad:?}: {e:#}");
        }
        assert_eq!(nix::unistd::getuid(), nix::unistd::geteuid());
    }

    #[test]
    fn the_agent_process_is_undumpable() {
        undumpable().unwrap();
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
    }

    #[test]
    fn run_as_resolves_a_user_or_names_the_missing_one() {
        let root = run_as("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = run_as("no-such-user-flux").unwrap_err().to_string();
        assert!(e.contains("no-such-user-flux"), "{e}");
    }
}
