//! Per-tenant quotas, enforced at admission: queued jobs and submit rate when a job is
//! submitted, running jobs when the scheduler assigns. Set by admins of the cluster tenant and
//! stored with CAS under `_system/quotas/<tenant>`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::store::{Expect, Key, SYSTEM_TENANT, Store, StoreError, Version, validate_tenant};

/// A tenant's limits; an absent field is unlimited.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Jobs waiting for an agent.
    pub max_queued: Option<u64>,
    /// Attempts assigned to or running on agents at once.
    pub max_running: Option<u64>,
    /// Sustained submissions per second (per fluxd node).
    pub submit_per_sec: Option<f64>,
    /// Submissions allowed in a burst above the rate (default: one second's worth, at least 1).
    pub submit_burst: Option<u64>,
    /// Desired states the tenant may hold.
    pub max_states: Option<u64>,
    /// Retention override: finished jobs are collected this many seconds after they ended
    /// (instead of fluxd's `--job-retention`).
    pub job_retention_secs: Option<u64>,
    /// Retention override: finished jobs kept at most, newest first (instead of fluxd's
    /// `--job-retention-count`).
    pub job_retention_count: Option<u64>,
    /// A fan-out (`--all`) over more than this many agents runs as a rollout with safe
    /// defaults (10% at once, no error tolerated, one canary) instead of everywhere at once.
    pub rollout_above: Option<u64>,
}

/// Longest job retention a quota may set (10 years).
pub const MAX_JOB_RETENTION_SECS: u64 = 10 * 365 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("corrupt quota of tenant {0}")]
    Corrupt(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Quota {
    pub fn validate(&self) -> Result<(), QuotaError> {
        let bad = |m: &str| Err(QuotaError::Invalid(m.to_string()));
        if self.max_queued == Some(0) || self.max_running == Some(0) {
            return bad(
                "max_queued and max_running must be at least 1 (leave them out for no limit)",
            );
        }
        if self.rollout_above == Some(0) {
            return bad("rollout_above must be at least 1 (leave it out for no limit)");
        }
        if self.max_states.is_some_and(|m| m > 1_000_000) {
            return bad("max_states must be at most 1000000 (leave it out for no limit)");
        }
        if let Some(r) = self.submit_per_sec
            && !(r.is_finite() && r > 0.0 && r <= 100_000.0)
        {
            return bad("submit_per_sec must be above 0 and at most 100000");
        }
        if self.submit_burst.is_some_and(|b| b == 0 || b > 1_000_000) {
            return bad("submit_burst must be between 1 and 1000000");
        }
        if self.submit_burst.is_some() && self.submit_per_sec.is_none() {
            return bad("submit_burst needs submit_per_sec");
        }
        if self
            .job_retention_secs
            .is_some_and(|s| s == 0 || s > MAX_JOB_RETENTION_SECS)
        {
            return bad("job_retention_secs must be between 1 and 315360000 (10 years)");
        }
        if self
            .job_retention_count
            .is_some_and(|c| c == 0 || c > 1_000_000_000)
        {
            return bad("job_retention_count must be between 1 and 1000000000");
        }
        Ok(())
    }

    fn burst(&self) -> f64 {
        match (self.submit_burst, self.submit_per_sec) {
            (Some(b), _) => b as f64,
            (None, Some(r)) => r.max(1.0),
            (None, None) => f64::INFINITY,
        }
    }
}

/// Where a tenant's quota is stored.
pub fn key(tenant: &str) -> Result<Key, QuotaError> {
    validate_tenant(tenant)?;
    Ok(Key::new(SYSTEM_TENANT, keys::quota(tenant))?)
}

/// A tenant's quota and its version (`None`: never set, no limits).
pub async fn get(store: &dyn Store, tenant: &str) -> Result<(Quota, Option<Version>), QuotaError> {
    match store.get(&key(tenant)?).await? {
        None => Ok((Quota::default(), None)),
        Some(v) => Ok((
            serde_json::from_slice(&v.value).map_err(|_| QuotaError::Corrupt(tenant.into()))?,
            Some(v.version),
        )),
    }
}

/// A tenant's quota as a service reads it to admit work: a store failure becomes the service's
/// store error, and a quota record that does not decode becomes its corrupt object
/// (`corrupt(key, reason)`, the key named `quota of {tenant}`).
pub(crate) async fn read<E: From<StoreError>>(
    store: &dyn Store,
    tenant: &str,
    corrupt: impl FnOnce(String, String) -> E,
) -> Result<Quota, E> {
    match get(store, tenant).await {
        Ok((quota, _)) => Ok(quota),
        Err(QuotaError::Store(s)) => Err(E::from(s)),
        Err(other) => Err(corrupt(format!("quota of {tenant}"), other.to_string())),
    }
}

/// Sets a tenant's quota; `expect` is a CAS on the version the caller read.
pub async fn put(
    store: &dyn Store,
    tenant: &str,
    quota: &Quota,
    expect: Expect,
) -> Result<Version, QuotaError> {
    quota.validate()?;
    let body = serde_json::to_vec(quota).expect("quotas serialise");
    match store.put(key(tenant)?, body, expect).await {
        Err(StoreError::Conflict { found, .. }) => Err(QuotaError::PreconditionFailed(format!(
            "the quota of {tenant} is at {}, not as expected ({expect})",
            found.map_or("no version".into(), |v| format!("version {v}"))
        ))),
        other => Ok(other?),
    }
}

/// Token buckets for submission rates, one per tenant, in this process.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    /// Takes one token for `tenant` at `now`, or says how long until one is available.
    pub fn take(&self, tenant: &str, quota: &Quota, now: Instant) -> Result<(), Duration> {
        self.take_n(tenant, quota, now, 1)
    }

    /// Takes `n` tokens at once (a fan-out of `n` jobs), or none.
    pub fn take_n(
        &self,
        tenant: &str,
        quota: &Quota,
        now: Instant,
        n: u64,
    ) -> Result<(), Duration> {
        let Some(rate) = quota.submit_per_sec else {
            return Ok(());
        };
        let burst = quota.burst();
        let mut b = self.buckets.lock().expect("rate limiter lock");
        let (tokens, last) = b.entry(tenant.to_string()).or_insert((burst, now));
        let elapsed = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + elapsed * rate).min(burst);
        *last = now;
        let want = n as f64;
        if want > burst {
            // More than a full bucket can ever hold: a wait would not help.
            return Err(Duration::from_secs_f64(burst / rate));
        }
        if *tokens >= want {
            *tokens -= want;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((want - *tokens) / rate))
        }
    }
}

/// Why a submission was refused at admission; nothing is written for it. The message names the
/// tenant and the limit passed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("tenant {tenant} has {queued} queued jobs; {n} more would pass its quota of {max}")]
    Queued {
        tenant: String,
        queued: u64,
        n: u64,
        max: u64,
    },
    #[error("tenant {tenant} submits faster than its quota of {per_sec}/s")]
    Rate {
        tenant: String,
        per_sec: f64,
        /// Until the bucket holds the tokens asked for.
        wait: Duration,
    },
    #[error("tenant {tenant} would hold {after} desired states; its quota max_states is {max}")]
    States {
        tenant: String,
        after: u64,
        max: u64,
    },
}

impl Refusal {
    /// Whole seconds a client should wait before retrying (at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            Refusal::Queued { .. } | Refusal::States { .. } => 1,
            Refusal::Rate { wait, .. } => (wait.as_secs_f64().ceil() as u64).max(1),
        }
    }
}

/// The admission decision for `n` new jobs of `tenant` (a fan-out submits several) at `now`:
/// the queued-jobs quota against `queued` (the tenant's queue depth, ignored without
/// `max_queued`), then the submit rate, whose tokens are taken from `rates` only when the
/// submission is admitted by both. The queued count is read by the caller before the jobs are
/// written, so concurrent submissions can overshoot it by a few.
pub fn admit(
    rates: &RateLimiter,
    tenant: &str,
    quota: &Quota,
    queued: u64,
    n: u64,
    now: Instant,
) -> Result<(), Refusal> {
    admit_queued(tenant, quota, queued, n)?;
    rates
        .take_n(tenant, quota, now, n)
        .map_err(|wait| Refusal::Rate {
            tenant: tenant.to_string(),
            per_sec: quota.submit_per_sec.unwrap_or_default(),
            wait,
        })
}

/// The queued-jobs part of [`admit`] alone (a schedule's firing is leader work, not a
/// client's submission: it is bounded by `max_queued` but takes no rate tokens).
pub fn admit_queued(tenant: &str, quota: &Quota, queued: u64, n: u64) -> Result<(), Refusal> {
    match quota.max_queued {
        Some(max) if queued + n > max => Err(Refusal::Queued {
            tenant: tenant.to_string(),
            queued,
            n,
            max,
        }),
        _ => Ok(()),
    }
}

/// The decision on a change of a tenant's desired states (a PUT, an apply) that takes it from
/// `before` to `after` states: refused when it grows the tenant past `max_states`. A change that
/// does not grow the count (an update, a prune) is always admitted, even above a quota lowered
/// since.
pub fn admit_states(tenant: &str, quota: &Quota, before: u64, after: u64) -> Result<(), Refusal> {
    match quota.max_states {
        Some(max) if after > before && after > max => Err(Refusal::States {
            tenant: tenant.to_string(),
            after,
            max,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_allows_a_burst_then_the_sustained_rate() {
        let q = Quota {
            submit_per_sec: Some(2.0),
            submit_burst: Some(3),
            ..Quota::default()
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.take("acme", &q, t0).is_ok());
        }
        let wait = r.take("acme", &q, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        // Other tenants have their own bucket.
        assert!(r.take("globex", &q, t0).is_ok());
        assert!(r.take("acme", &q, t0 + Duration::from_millis(500)).is_ok());
        assert!(r.take("acme", &q, t0 + Duration::from_millis(500)).is_err());
        // No rate, no limit.
        assert!(r.take("acme", &Quota::default(), t0).is_ok());
    }

    #[test]
    fn nonsense_quotas_are_refused() {
        for q in [
            Quota {
                max_queued: Some(0),
                ..Quota::default()
            },
            Quota {
                submit_per_sec: Some(f64::NAN),
                ..Quota::default()
            },
            Quota {
                submit_per_sec: Some(-1.0),
                ..Quota::default()
            },
            Quota {
                submit_burst: Some(5),
                ..Quota::default()
            },
            Quota {
                job_retention_secs: Some(0),
                ..Quota::default()
            },
            Quota {
                job_retention_count: Some(0),
                ..Quota::default()
            },
        ] {
            assert!(q.validate().is_err(), "{q:?}");
        }
        assert!(Quota::default().validate().is_ok());
    }

    #[test]
    fn the_state_count_may_not_grow_past_max_states() {
        let q = Quota {
            max_states: Some(3),
            ..Quota::default()
        };
        assert_eq!(admit_states("acme", &q, 0, 3), Ok(()));
        let e = admit_states("acme", &q, 3, 4).unwrap_err();
        assert_eq!(
            e.to_string(),
            "tenant acme would hold 4 desired states; its quota max_states is 3"
        );
        assert!(admit_states("acme", &q, 0, 40).is_err());
        // Above a lowered quota, updates and prunes still go through; growth does not.
        assert_eq!(admit_states("acme", &q, 5, 5), Ok(()));
        assert_eq!(admit_states("acme", &q, 5, 4), Ok(()));
        assert!(admit_states("acme", &q, 5, 6).is_err());
        assert_eq!(admit_states("acme", &Quota::default(), 0, 1_000), Ok(()));
        assert!(
            Quota {
                max_states: Some(2_000_000),
                ..Quota::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn admission_checks_the_queue_then_the_rate() {
        let q = Quota {
            max_queued: Some(10),
            submit_per_sec: Some(2.0),
            submit_burst: Some(4),
            ..Quota::default()
        };
        let r = RateLimiter::default();
        let t0 = Instant::now();
        assert_eq!(admit(&r, "acme", &q, 7, 3, t0), Ok(()));
        let full = admit(&r, "acme", &q, 8, 3, t0).unwrap_err();
        assert_eq!(
            full.to_string(),
            "tenant acme has 8 queued jobs; 3 more would pass its quota of 10"
        );
        assert_eq!(full.retry_after_secs(), 1);
        // The refused submission took no tokens: one is left of the burst of 4.
        assert_eq!(admit(&r, "acme", &q, 0, 1, t0), Ok(()));
        let fast = admit(&r, "acme", &q, 0, 3, t0).unwrap_err();
        assert_eq!(
            fast.to_string(),
            "tenant acme submits faster than its quota of 2/s"
        );
        assert_eq!(fast.retry_after_secs(), 2);
        // Without limits everything is admitted, whatever the queue.
        assert_eq!(
            admit(&r, "acme", &Quota::default(), 1_000_000, 50, t0),
            Ok(())
        );
    }
}
