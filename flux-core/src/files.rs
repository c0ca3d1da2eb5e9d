//! Owner-only files (keys, tokens, certificates' keys, backups, the store): created with mode
//! 0600 and flushed to disk before anyone is told they exist. Nothing here writes through a
//! file or a symbolic link that was already there: new files are created exclusively
//! (`O_CREAT | O_EXCL`, which also refuses a symlink, even a dangling one), and a replacement is
//! written to a fresh temporary file with a random name beside its target, then renamed over it.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// How many random temporary names [`replace_private`] tries before giving up.
const TMP_ATTEMPTS: usize = 16;

/// Creates `path`, which must not exist yet (nor be a symlink), readable and writable by its
/// owner only, holding `bytes`, flushed to disk.
pub fn create_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = open_new_private(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn open_new_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// The temporary name used for replacing `path`: hidden, beside it, with 64 random bits.
fn tmp_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.{:016x}.tmp", rand::random::<u64>()))
}

/// Whether `name` is a temporary file [`replace_private`] made for a file named `target`
/// (left behind by a crash): for cleaning them up.
pub fn is_tmp_for(name: &str, target: &str) -> bool {
    name.strip_prefix('.')
        .and_then(|n| n.strip_prefix(target))
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(".tmp"))
        .is_some_and(|r| r.len() == 16 && r.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Replaces `path` with `bytes` in one step: written owner-only to a new temporary file with a
/// random name in the same directory (created exclusively, so an existing file or symlink is
/// never written through), flushed, renamed over `path` (which replaces a symlink at `path`
/// itself, never its target), and the directory flushed, so a crash leaves the old file or the
/// new one, never part.
pub fn replace_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (tmp, mut f) = {
        let mut attempt = 0;
        loop {
            let tmp = tmp_name(path);
            match open_new_private(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < TMP_ATTEMPTS => {
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    };
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}

/// Makes `dir` (and missing parents) with mode 0700 if it does not exist; an existing `dir`
/// that group or others may enter is narrowed to 0700. For directories that hold only
/// FluxForge's own secrets (`tls/`).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            if m.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a directory", dir.display()),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        Err(e) => Err(e),
    }
}

/// Makes sure the file at `path` exists and is readable by its owner only: a missing file is
/// created empty with mode 0600 (exclusively), an existing one that group or others may read
/// is narrowed to 0600. For files another library creates with default permissions (the redb
/// store).
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    match open_new_private(path) {
        Ok(f) => f.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let m = std::fs::metadata(path)?;
            if m.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_files_are_owner_only_and_create_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        create_private(&p, b"one").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(mode(&p), 0o600);
        let e = create_private(&p, b"two").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");

        replace_private(&p, b"three").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"three");
        assert_eq!(mode(&p), 0o600);
        let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn create_private_refuses_a_symlink_even_a_dangling_one() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = create_private(&link, b"secret").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert!(!target.exists(), "nothing was written through the link");
    }

    #[test]
    fn a_replacement_never_writes_through_an_existing_file_or_link() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("nightly.backup");
        // A world-readable file and a symlink where older versions put their temporary file.
        let partial = d.path().join("nightly.partial");
        std::fs::write(&partial, b"old").unwrap();
        std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o644)).unwrap();
        let leak = d.path().join("leak.txt");
        std::fs::write(&leak, b"").unwrap();
        std::fs::set_permissions(&leak, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&leak, d.path().join("nightly.tmp")).unwrap();
        // A symlink at the target itself is replaced, not followed.
        std::os::unix::fs::symlink(&leak, &p).unwrap();

        replace_private(&p, b"secret").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert_eq!(mode(&p), 0o600);
        assert!(!std::fs::symlink_metadata(&p).unwrap().is_symlink());
        assert_eq!(
            std::fs::read(&leak).unwrap(),
            b"",
            "the link's target is untouched"
        );
        assert_eq!(std::fs::read(&partial).unwrap(), b"old");
    }

    #[test]
    fn temporary_names_are_recognised_for_cleanup() {
        let p = Path::new("/x/fluxforge-1.backup");
        let t = tmp_name(p);
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(is_tmp_for(name, "fluxforge-1.backup"), "{name}");
        assert!(!is_tmp_for(name, "fluxforge-2.backup"));
        assert!(!is_tmp_for(".fluxforge-1.backup.tmp", "fluxforge-1.backup"));
        assert_ne!(tmp_name(p), t, "names are random");
    }

    #[test]
    fn private_dirs_and_files_are_narrowed_when_they_already_exist() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("tls");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let fresh = d.path().join("a/b");
        create_private_dir(&fresh).unwrap();
        assert_eq!(mode(&fresh), 0o700);

        let f = d.path().join("flux.redb");
        ensure_private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        ensure_private_file(&f).unwrap();
        assert_eq!(mode(&f), 0o600);
    }
}
