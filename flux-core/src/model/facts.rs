//! Facts: what an agent reports of its machine (os, distribution, arch, kernel, host name,
//! cpus, memory, root filesystem, IP addresses, agent version, boot time), stored on its
//! record and matched by selectors as `fact.NAME` (see [`crate::selector`]).
//!
//! Every fact is optional: an agent that does not report one (an older agent, a platform where
//! it cannot be read) simply lacks it, and a selector requirement on a missing fact never
//! matches. Sizes are bounded ([`validate_facts`]) so that a hostile agent cannot store more
//! than a few kilobytes. Free space is reported in whole GiB, so that it changes (and the agent
//! sends its facts again) only when it moves by a gibibyte, not on every write to the disk.

use serde::{Deserialize, Serialize};

/// Largest text fact.
pub const MAX_FACT_TEXT_BYTES: usize = 256;
/// Most IP addresses an agent reports.
pub const MAX_FACT_IPS: usize = 32;

/// The facts an agent reports.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Facts {
    /// Operating system family, e.g. `linux`.
    pub os: Option<String>,
    /// Distribution id, e.g. `ubuntu`, `debian`.
    pub distribution: Option<String>,
    /// Distribution version, e.g. `24.04`.
    pub distribution_version: Option<String>,
    /// CPU architecture, e.g. `x86_64`, `aarch64`.
    pub arch: Option<String>,
    /// Kernel release, e.g. `6.8.0-45-generic`.
    pub kernel: Option<String>,
    pub hostname: Option<String>,
    /// Logical CPUs.
    pub cpus: Option<u64>,
    /// Total memory, MiB.
    pub memory_mb: Option<u64>,
    /// Size of the root filesystem, whole GiB.
    pub root_total_gb: Option<u64>,
    /// Space available on the root filesystem, whole GiB (rounded down).
    pub root_free_gb: Option<u64>,
    /// IP addresses of the machine's interfaces (loopback excluded), sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<String>,
    pub agent_version: Option<String>,
    /// Boot time, seconds since the Unix epoch.
    pub boot_time: Option<u64>,
}

/// What kind of value a fact has, which decides how selectors compare it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactKind {
    /// Compared as text (`=`, `!=`, `in`, `notin`).
    Text,
    /// Compared numerically (also `<`, `<=`, `>`, `>=`).
    Number,
    /// A list: `=`/`in` match when it holds the value, `!=`/`notin` when it holds none.
    List,
}

/// One fact's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FactValue<'a> {
    Text(&'a str),
    Number(u64),
    List(&'a [String]),
}

/// Every fact name, its kind, in the order `fluxctl agents get` shows them.
pub const FACT_NAMES: &[(&str, FactKind)] = &[
    ("os", FactKind::Text),
    ("distribution", FactKind::Text),
    ("distribution_version", FactKind::Text),
    ("arch", FactKind::Text),
    ("kernel", FactKind::Text),
    ("hostname", FactKind::Text),
    ("cpus", FactKind::Number),
    ("memory_mb", FactKind::Number),
    ("root_total_gb", FactKind::Number),
    ("root_free_gb", FactKind::Number),
    ("ips", FactKind::List),
    ("agent_version", FactKind::Text),
    ("boot_time", FactKind::Number),
];

/// The kind of the fact called `name`, if there is one.
pub fn fact_kind(name: &str) -> Option<FactKind> {
    FACT_NAMES.iter().find(|(n, _)| *n == name).map(|(_, k)| *k)
}

impl Facts {
    /// The value of the fact called `name`; `None` when it is not reported (an empty list of
    /// addresses counts as not reported) or there is no such fact.
    pub fn get(&self, name: &str) -> Option<FactValue<'_>> {
        fn text(v: &Option<String>) -> Option<FactValue<'_>> {
            v.as_deref().map(FactValue::Text)
        }
        fn num(v: &Option<u64>) -> Option<FactValue<'static>> {
            v.map(FactValue::Number)
        }
        match name {
            "os" => text(&self.os),
            "distribution" => text(&self.distribution),
            "distribution_version" => text(&self.distribution_version),
            "arch" => text(&self.arch),
            "kernel" => text(&self.kernel),
            "hostname" => text(&self.hostname),
            "cpus" => num(&self.cpus),
            "memory_mb" => num(&self.memory_mb),
            "root_total_gb" => num(&self.root_total_gb),
            "root_free_gb" => num(&self.root_free_gb),
            "ips" => (!self.ips.is_empty()).then_some(FactValue::List(&self.ips)),
            "agent_version" => text(&self.agent_version),
            "boot_time" => num(&self.boot_time),
            _ => None,
        }
    }

    /// Every reported fact, as `(name, shown value)`, in [`FACT_NAMES`] order.
    pub fn shown(&self) -> Vec<(&'static str, String)> {
        FACT_NAMES
            .iter()
            .filter_map(|(n, _)| {
                self.get(n).map(|v| {
                    let s = match v {
                        FactValue::Text(t) => t.to_string(),
                        FactValue::Number(x) => x.to_string(),
                        FactValue::List(l) => l.join(","),
                    };
                    (*n, s)
                })
            })
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        *self == Facts::default()
    }
}

/// Checks the bounds of reported facts; the error names the field.
pub fn validate_facts(f: &Facts) -> Result<(), String> {
    let texts = [
        ("os", &f.os),
        ("distribution", &f.distribution),
        ("distribution_version", &f.distribution_version),
        ("arch", &f.arch),
        ("kernel", &f.kernel),
        ("hostname", &f.hostname),
        ("agent_version", &f.agent_version),
    ];
    for (name, v) in texts {
        if let Some(s) = v
            && (s.len() > MAX_FACT_TEXT_BYTES || s.chars().any(char::is_control))
        {
            return Err(format!(
                "facts.{name}: must be at most {MAX_FACT_TEXT_BYTES} bytes without control \
                 characters (got {} bytes)",
                s.len()
            ));
        }
    }
    if f.ips.len() > MAX_FACT_IPS {
        return Err(format!(
            "facts.ips: at most {MAX_FACT_IPS} addresses (got {})",
            f.ips.len()
        ));
    }
    if let Some((i, _)) = f
        .ips
        .iter()
        .enumerate()
        .find(|(_, ip)| ip.len() > 64 || ip.parse::<std::net::IpAddr>().is_err())
    {
        return Err(format!("facts.ips[{i}]: not an IP address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_named_fact_is_read_by_get_and_bounds_name_the_field() {
        let f = Facts {
            os: Some("linux".into()),
            distribution: Some("debian".into()),
            distribution_version: Some("13".into()),
            arch: Some("x86_64".into()),
            kernel: Some("6.1".into()),
            hostname: Some("h".into()),
            cpus: Some(2),
            memory_mb: Some(4096),
            root_total_gb: Some(40),
            root_free_gb: Some(12),
            ips: vec!["10.0.0.1".into()],
            agent_version: Some("0.1.0".into()),
            boot_time: Some(1),
        };
        for (name, kind) in FACT_NAMES {
            let v = f.get(name).unwrap_or_else(|| panic!("{name} is not read"));
            let k = match v {
                FactValue::Text(_) => FactKind::Text,
                FactValue::Number(_) => FactKind::Number,
                FactValue::List(_) => FactKind::List,
            };
            assert_eq!(k, *kind, "{name}");
        }
        assert_eq!(f.shown().len(), FACT_NAMES.len());
        assert!(validate_facts(&f).is_ok());
        assert_eq!(Facts::default().get("ips"), None);
        assert_eq!(f.get("nope"), None);
        let mut bad = f.clone();
        bad.kernel = Some("k".repeat(100_000));
        let e = validate_facts(&bad).unwrap_err();
        assert!(e.starts_with("facts.kernel:") && e.len() < 200, "{e}");
        let mut bad = f.clone();
        bad.ips = vec!["1.2.3.4".into(); MAX_FACT_IPS + 1];
        assert!(validate_facts(&bad).unwrap_err().starts_with("facts.ips:"));
        let mut bad = f;
        bad.ips = vec!["1.2.3.4".into(), "x".repeat(10_000)];
        assert!(
            validate_facts(&bad)
                .unwrap_err()
                .starts_with("facts.ips[1]:")
        );
    }
}
