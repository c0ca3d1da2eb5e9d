//! Free space under the embedded store: submissions are refused early, with 507 and the reason,
//! when the filesystem that holds the store file has less than `--min-free-disk` left, before
//! redb would fail on a full disk. The rule is [`verdict`]; [`DiskGuard`] reads the filesystem
//! (`statvfs`) at most once a second.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long one reading of the free space is trusted.
const READ_EVERY: Duration = Duration::from_secs(1);

/// Why new work is refused at `free` bytes left with `min_free` required, or `None`.
pub fn verdict(free: u64, min_free: u64) -> Option<String> {
    (free < min_free).then(|| {
        format!(
            "the store's disk has {} free, below --min-free-disk {}; new work is refused until \
             space is freed",
            human(free),
            human(min_free)
        )
    })
}

/// Bytes as the largest binary unit that keeps the figure at or above 1.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parses a byte count: a plain number, or one with a unit (`KiB`, `MiB`, `GiB`, `TiB`, or
/// `K`, `M`, `G`, `T`, all binary).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = flux_core::model::number_and_unit(s)
        .ok_or_else(|| format!("{s:?} is not a byte count (as in 512MiB or 1GiB)"))?;
    let shift = match unit {
        "" | "B" => 0,
        "K" | "KiB" => 10,
        "M" | "MiB" => 20,
        "G" | "GiB" => 30,
        "T" | "TiB" => 40,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {s:?} (use KiB, MiB, GiB or TiB)"
            ));
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Watches the free space of one directory's filesystem.
pub struct DiskGuard {
    dir: PathBuf,
    min_free: u64,
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, min_free: u64) -> DiskGuard {
        DiskGuard {
            dir,
            min_free,
            last: Mutex::new(None),
        }
    }

    /// Bytes available to fluxd on the filesystem, read at most once a second.
    pub fn free_bytes(&self) -> std::io::Result<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, free)) = *last
            && at.elapsed() < READ_EVERY
        {
            return Ok(free);
        }
        let st = nix::sys::statvfs::statvfs(&self.dir).map_err(std::io::Error::from)?;
        let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
        *last = Some((Instant::now(), free));
        Ok(free)
    }

    /// Why new work is refused now, or `None`. A filesystem that cannot be read refuses nothing
    /// (the store's own errors will tell).
    pub fn refusal(&self) -> Option<String> {
        match self.free_bytes() {
            Ok(free) => verdict(free, self.min_free),
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot read free disk space");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_is_refused_only_below_the_threshold() {
        assert_eq!(verdict(100, 100), None);
        assert_eq!(verdict(u64::MAX, 64 << 20), None);
        let why = verdict(10 << 20, 64 << 20).unwrap();
        assert!(why.contains("10.0 MiB free"), "{why}");
        assert!(why.contains("--min-free-disk 64.0 MiB"), "{why}");
        assert_eq!(verdict(0, 0), None, "0 turns the check off");
    }

    #[test]
    fn byte_counts_parse_with_binary_units() {
        assert_eq!(parse_bytes("0"), Ok(0));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1G"), Ok(1 << 30));
        assert_eq!(parse_bytes("2 TiB"), Ok(2 << 40));
        assert!(parse_bytes("MiB").is_err());
        assert!(
            parse_bytes("5 parsecs")
                .unwrap_err()
                .contains("unknown unit")
        );
        assert!(
            parse_bytes("99999999999TiB")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn the_free_space_of_a_real_directory_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let g = DiskGuard::new(dir.path().to_path_buf(), 0);
        assert!(g.free_bytes().unwrap() > 0);
        assert_eq!(g.refusal(), None);
        let g = DiskGuard::new(dir.path().to_path_buf(), u64::MAX);
        assert!(g.refusal().is_some());
    }
}
