//! What the agent reports of its machine ([`flux_core::model::Facts`]), read with `sysinfo`:
//! os, distribution and version, arch, kernel, host name, logical cpus, memory, the root
//! filesystem's size and free space, the interfaces' IP addresses (loopback addresses left out),
//! the agent's version and the boot time.
//!
//! Facts go with every registration, and in a heartbeat only when they changed since they were
//! last accepted: [`FactsTracker`] keeps what was sent and answers what to send. They are read
//! again every `--facts-interval`. Free space is rounded down to whole GiB, so ordinary writes
//! do not count as a change.

use std::sync::Mutex;

use flux_core::model::{Facts, MAX_FACT_IPS, MAX_FACT_TEXT_BYTES};
use sysinfo::{Disks, MemoryRefreshKind, Networks, RefreshKind, System};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Reads the facts now (blocking: it reads files under /proc and /sys).
pub(crate) fn collect() -> Facts {
    let sys = System::new_with_specifics(
        RefreshKind::nothing().with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    let text = |s: Option<String>| {
        s.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= MAX_FACT_TEXT_BYTES)
            .filter(|s| !s.chars().any(char::is_control))
    };
    let (root_total_gb, root_free_gb) = Disks::new_with_refreshed_list()
        .list()
        .iter()
        .find(|d| d.mount_point() == std::path::Path::new("/"))
        .map(|d| (Some(d.total_space() / GIB), Some(d.available_space() / GIB)))
        .unwrap_or((None, None));
    let mut ips: Vec<String> = Networks::new_with_refreshed_list()
        .values()
        .flat_map(|n| n.ip_networks().iter().map(|ip| ip.addr))
        .filter(|a| !a.is_loopback() && !a.is_unspecified())
        .map(|a| a.to_string())
        .collect();
    ips.sort();
    ips.dedup();
    ips.truncate(MAX_FACT_IPS);
    Facts {
        os: Some(std::env::consts::OS.to_string()),
        distribution: text(Some(System::distribution_id())),
        distribution_version: text(System::os_version()),
        arch: text(Some(System::cpu_arch())).or_else(|| Some(std::env::consts::ARCH.into())),
        kernel: text(System::kernel_version()),
        hostname: text(System::host_name()),
        cpus: std::thread::available_parallelism()
            .ok()
            .map(|n| n.get() as u64),
        memory_mb: Some(sys.total_memory() / MIB).filter(|m| *m > 0),
        root_total_gb,
        root_free_gb,
        ips,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        boot_time: Some(System::boot_time()).filter(|t| *t > 0),
    }
}

/// Reads the facts on the blocking pool.
pub(crate) async fn collect_async() -> Facts {
    tokio::task::spawn_blocking(collect)
        .await
        .unwrap_or_default()
}

/// What was last accepted by the control plane, to send facts only when they change.
/// A control plane older than facts refuses them (unknown field): the agent then stops sending.
#[derive(Default)]
pub(crate) struct FactsTracker {
    sent: Mutex<Sent>,
}

#[derive(Default)]
enum Sent {
    #[default]
    Nothing,
    Accepted(Box<Facts>),
    Unsupported,
}

impl FactsTracker {
    /// The facts to put in a heartbeat: `now` if it differs from what was last accepted.
    pub(crate) fn to_send(&self, now: &Facts) -> Option<Facts> {
        match &*self.sent.lock().expect("facts") {
            Sent::Accepted(f) if **f == *now => None,
            Sent::Unsupported => None,
            _ => Some(now.clone()),
        }
    }

    /// The control plane accepted these facts (a registration or heartbeat carrying them).
    pub(crate) fn accepted(&self, f: Facts) {
        *self.sent.lock().expect("facts") = Sent::Accepted(Box::new(f));
    }

    pub(crate) fn is_unsupported(&self) -> bool {
        matches!(*self.sent.lock().expect("facts"), Sent::Unsupported)
    }

    /// The control plane takes no facts: send none from now on.
    pub(crate) fn unsupported(&self) {
        *self.sent.lock().expect("facts") = Sent::Unsupported;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reports_its_main_facts_within_bounds() {
        let f = collect();
        assert_eq!(f.os.as_deref(), Some(std::env::consts::OS));
        assert!(f.cpus.is_some_and(|c| c >= 1), "{f:?}");
        assert!(f.memory_mb.is_some_and(|m| m > 0), "{f:?}");
        assert!(f.kernel.is_some(), "{f:?}");
        assert!(f.boot_time.is_some(), "{f:?}");
        assert!(f.ips.iter().all(|ip| !ip.starts_with("127.")), "{f:?}");
        flux_core::model::validate_facts(&f).unwrap();
        // Read twice, the facts are the same (free space is coarse).
        assert_eq!(collect().cpus, f.cpus);
    }

    #[test]
    fn facts_are_sent_only_when_they_change() {
        let t = FactsTracker::default();
        let f = Facts {
            cpus: Some(2),
            ..Facts::default()
        };
        assert_eq!(t.to_send(&f), Some(f.clone()));
        t.accepted(f.clone());
        assert_eq!(t.to_send(&f), None);
        let g = Facts {
            cpus: Some(4),
            ..Facts::default()
        };
        assert_eq!(t.to_send(&g), Some(g.clone()));
        t.unsupported();
        assert_eq!(t.to_send(&g), None);
    }
}
