//! What kind of failure a domain error is, once for every error of the crate.
//!
//! Each service has its own typed error (thiserror); [`HasKind`] says which [`ErrorKind`] each
//! variant is, so that a server can map kinds to statuses in one place instead of once per
//! error type. The kinds are derived from how fluxd answers each error today:
//!
//! | kind                 | HTTP status today |
//! |----------------------|-------------------|
//! | `NotFound`           | 404               |
//! | `Invalid`            | 422               |
//! | `Conflict`           | 409               |
//! | `Gone`               | 410               |
//! | `PreconditionFailed` | 412               |
//! | `QuotaExceeded`      | 429               |
//! | `Unauthorized`       | 401               |
//! | `Unavailable`        | 503               |
//! | `Corrupt`            | 500               |
//!
//! The impls for errors defined in other modules live here too, so that the whole mapping can
//! be read (and reviewed) in one file.

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::backup::BackupError;
use crate::jobs::JobError;
use crate::quota::QuotaError;
use crate::rollout::RolloutError;
use crate::store::{Expect, StoreError, Version};

/// The kind of a failure, independent of which service reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The object does not exist (or belongs to another tenant).
    NotFound,
    /// The request breaks a rule; retrying it unchanged fails again.
    Invalid,
    /// Someone else changed the object first; retrying may succeed.
    Conflict,
    /// The object was taken away (an attempt reassigned, cancelled or finished).
    Gone,
    /// The version the caller named is not the one stored.
    PreconditionFailed,
    /// The tenant is over a quota or rate.
    QuotaExceeded,
    /// No valid credentials.
    Unauthorized,
    /// The store (or a service behind it) cannot answer now.
    Unavailable,
    /// A stored object does not decode: a bug or damage, not the caller's fault.
    Corrupt,
}

/// Implemented by every domain error of the crate.
pub trait HasKind {
    fn kind(&self) -> ErrorKind;
}

impl HasKind for StoreError {
    fn kind(&self) -> ErrorKind {
        match self {
            StoreError::Conflict { .. } => ErrorKind::Conflict,
            StoreError::InvalidKey(_) | StoreError::InvalidTxn(_) => ErrorKind::Invalid,
            // A restore into a store that is not empty (answered 409 by the backup API).
            StoreError::NotEmpty(_) => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl HasKind for RolloutError {
    fn kind(&self) -> ErrorKind {
        match self {
            RolloutError::NotFound(_) => ErrorKind::NotFound,
            RolloutError::Invalid(_) => ErrorKind::Invalid,
            RolloutError::Conflict(_) => ErrorKind::Conflict,
            RolloutError::Corrupt { .. } => ErrorKind::Corrupt,
            RolloutError::Jobs(j) => j.kind(),
            RolloutError::Store(s) => s.kind(),
        }
    }
}

impl HasKind for JobError {
    fn kind(&self) -> ErrorKind {
        match self {
            JobError::NotFound(_) => ErrorKind::NotFound,
            JobError::Invalid(_) => ErrorKind::Invalid,
            JobError::Gone(_) => ErrorKind::Gone,
            JobError::Conflict(_) | JobError::Session(_) => ErrorKind::Conflict,
            JobError::Corrupt { .. } => ErrorKind::Corrupt,
            JobError::Store(s) => s.kind(),
        }
    }
}

/// `impl From<StoreError> for $error`, the one rule of every service error with `Invalid` and
/// `Store` variants: a key the store refuses (`InvalidKey`) is the caller's mistake, so
/// `$error::Invalid`; any other store failure is carried as `$error::Store`.
macro_rules! from_store_error {
    ($error:ident) => {
        impl From<$crate::store::StoreError> for $error {
            fn from(e: $crate::store::StoreError) -> $error {
                match e {
                    $crate::store::StoreError::InvalidKey(m) => $error::Invalid(m),
                    other => $error::Store(other),
                }
            }
        }
    };
}
pub(crate) use from_store_error;

/// The error of a service of stored, versioned specs written with CAS (desired states,
/// schedules): its variants, `From<StoreError>` (`from_store_error`), `From<JobError>` (a
/// store failure inside the job service stays a store failure), its [`HasKind`] and its
/// [`CasRefusal`]. The two
/// services answer alike, so their errors are declared once; they stay two types, so that each
/// says which service failed.
macro_rules! spec_service_error {
    ($(#[$doc:meta])* $error:ident, quota: $(#[$quota:meta])*) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        pub enum $error {
            #[error("{0} not found")]
            NotFound(String),
            #[error("{0}")]
            Invalid(String),
            /// The object changed under the caller (a concurrent write, or a plan gone stale).
            #[error("{0}")]
            Conflict(String),
            /// The version the caller named (`If-Match`, `If-None-Match`) is not the one stored.
            #[error("{0}")]
            PreconditionFailed(String),
            #[error("corrupt object {key}: {reason}")]
            Corrupt { key: String, reason: String },
            #[error(transparent)]
            Store($crate::store::StoreError),
            #[error(transparent)]
            Jobs($crate::jobs::JobError),
            $(#[$quota])*
            #[error(transparent)]
            Quota($crate::quota::Refusal),
        }

        $crate::error::from_store_error!($error);

        impl From<$crate::jobs::JobError> for $error {
            fn from(e: $crate::jobs::JobError) -> $error {
                match e {
                    $crate::jobs::JobError::Store(s) => $error::Store(s),
                    other => $error::Jobs(other),
                }
            }
        }

        impl $crate::error::HasKind for $error {
            fn kind(&self) -> $crate::error::ErrorKind {
                use $crate::error::ErrorKind;
                match self {
                    $error::NotFound(_) => ErrorKind::NotFound,
                    $error::Invalid(_) => ErrorKind::Invalid,
                    $error::Conflict(_) => ErrorKind::Conflict,
                    $error::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
                    $error::Corrupt { .. } => ErrorKind::Corrupt,
                    $error::Store(s) => s.kind(),
                    $error::Jobs(j) => j.kind(),
                    $error::Quota(_) => ErrorKind::QuotaExceeded,
                }
            }
        }

        impl $crate::error::CasRefusal for $error {
            fn precondition_failed(message: String) -> $error {
                $error::PreconditionFailed(message)
            }
            fn conflict(message: String) -> $error {
                $error::Conflict(message)
            }
        }
    };
}
pub(crate) use spec_service_error;

/// A service error that can say why the store refused a CAS write of one of its objects.
pub(crate) trait CasRefusal: From<StoreError> {
    fn precondition_failed(message: String) -> Self;
    fn conflict(message: String) -> Self;
}

/// The error of a CAS write of `what` `name` (`state motd`) that the store refused with `e`:
/// under a version the caller named (`expect` other than `Any`), PreconditionFailed saying what
/// is stored; under `Any`, a Conflict with another writer at the same moment.
pub(crate) fn write_refused<E: CasRefusal>(
    what: &str,
    name: &str,
    expect: Expect,
    e: StoreError,
) -> E {
    match e {
        StoreError::Conflict { found, .. } if expect != Expect::Any => {
            E::precondition_failed(match found {
                Some(v) => format!("{what} {name} is at version {v}, not as expected ({expect})"),
                None => format!("{what} {name} does not exist, not as expected ({expect})"),
            })
        }
        StoreError::Conflict { .. } => E::conflict(format!(
            "{what} {name} was written by someone else at the same moment; retry"
        )),
        e => e.into(),
    }
}

/// Refuses to delete `what` `name`, found at version `found`, when the caller expected another
/// version.
pub(crate) fn expect_for_delete<E: CasRefusal>(
    what: &str,
    name: &str,
    expect: Expect,
    found: Version,
) -> Result<(), E> {
    match expect {
        Expect::Version(e) if e != found => Err(E::precondition_failed(format!(
            "{what} {name} is at version {found}, not {e}"
        ))),
        _ => Ok(()),
    }
}

/// The error of a delete of `what` `name` that the store refused with `e` (the object moved
/// between its read and the delete).
pub(crate) fn delete_refused<E: CasRefusal>(what: &str, name: &str, e: StoreError) -> E {
    match e {
        StoreError::Conflict { .. } => {
            E::conflict(format!("{what} {name} changed while being deleted; retry"))
        }
        e => e.into(),
    }
}

impl HasKind for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuthError::Store(s) => s.kind(),
            AuthError::InvalidClaims(_) => ErrorKind::Invalid,
            _ => ErrorKind::Unauthorized,
        }
    }
}

impl HasKind for AuditError {
    fn kind(&self) -> ErrorKind {
        match self {
            AuditError::Store(s) => s.kind(),
            AuditError::Broken { .. } => ErrorKind::Conflict,
            _ => ErrorKind::Unavailable,
        }
    }
}

impl HasKind for BackupError {
    fn kind(&self) -> ErrorKind {
        match self {
            BackupError::Store(s) => s.kind(),
            _ => ErrorKind::Invalid,
        }
    }
}

impl HasKind for QuotaError {
    fn kind(&self) -> ErrorKind {
        match self {
            QuotaError::Invalid(_) => ErrorKind::Invalid,
            QuotaError::PreconditionFailed(_) => ErrorKind::PreconditionFailed,
            QuotaError::Corrupt(_) => ErrorKind::Corrupt,
            QuotaError::Store(s) => s.kind(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateError;

    #[test]
    fn wrapped_store_errors_keep_their_kind() {
        let conflict = StoreError::Conflict {
            key: "acme/jobs/1".into(),
            expected: crate::store::Expect::Absent,
            found: None,
        };
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        assert_eq!(JobError::Store(conflict).kind(), ErrorKind::Conflict);
        let down = StoreError::Unavailable("down".into());
        assert_eq!(StateError::Store(down).kind(), ErrorKind::Unavailable);
        assert_eq!(
            StateError::Jobs(JobError::Gone("x".into())).kind(),
            ErrorKind::Gone
        );
        assert_eq!(
            BackupError::Store(StoreError::NotEmpty(3)).kind(),
            ErrorKind::Conflict
        );
        assert_eq!(BackupError::Truncated.kind(), ErrorKind::Invalid);
        assert_eq!(AuthError::Expired.kind(), ErrorKind::Unauthorized);
        assert_eq!(
            StoreError::InvalidKey("k".into()).kind(),
            ErrorKind::Invalid
        );
    }
}
