//! The shell completions shipped in `completions/` are what `fluxctl completions` prints.
//! Regenerate them with `FLUX_UPDATE_COMPLETIONS=1 cargo test -p fluxctl --test completions`.

use std::path::PathBuf;
use std::process::Command;

#[test]
fn shipped_completions_are_current() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../completions");
    let update = std::env::var_os("FLUX_UPDATE_COMPLETIONS").is_some();
    let mut stale = Vec::new();
    for (shell, file) in [
        ("bash", "fluxctl.bash"),
        ("zsh", "_fluxctl"),
        ("fish", "fluxctl.fish"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .args(["completions", shell])
            .output()
            .expect("run fluxctl");
        assert!(out.status.success(), "{shell}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("job"),
            "{shell} completions do not mention subcommands"
        );
        let path = dir.join(file);
        if update {
            std::fs::write(&path, &out.stdout).unwrap();
        } else if std::fs::read(&path).ok().as_deref() != Some(&out.stdout[..]) {
            stale.push(file);
        }
    }
    assert!(
        stale.is_empty(),
        "completions/{stale:?} are stale; run FLUX_UPDATE_COMPLETIONS=1 cargo test -p fluxctl --test completions"
    );
}

#[test]
fn unknown_subcommand_and_bad_flags_exit_2() {
    for args in [
        &["frobnicate"][..],
        &["job", "run"][..],
        &["-o", "yaml", "status"][..],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_fluxctl"))
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("error:"),
            "{args:?}"
        );
    }
}
