//! The one error shape of the API, `{"error": {"code": "...", "message": "..."}}` with an
//! optional `Retry-After`, and how each flux-core error becomes it. Every mapping of a domain
//! error to a status and code is written here, once; handlers only use `?`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use flux_core::audit::AuditError;
use flux_core::auth::AuthError;
use flux_core::backup::BackupError;
use flux_core::jobs::JobError;
use flux_core::quota::{QuotaError, Refusal};
use flux_core::state::StateError;
use flux_core::store::StoreError;
use flux_core::tenants::TenantError;
use serde_json::json;

/// Every error the API returns: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 503 with `Retry-After: 1`: the store (or a service over it) cannot answer now.
    pub fn unavailable(m: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m).retry_after(1)
    }
    /// Sets `Retry-After` (seconds).
    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }
    /// A corrupt object is logged in full and answered without its details.
    fn corrupt(e: &dyn std::error::Error) -> ApiError {
        tracing::error!(error = %e, "corrupt object");
        ApiError::internal("corrupt object in store")
    }
}

/// The plain constructors: each answers with its status and code, the message as given.
macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $status:ident, $code:literal;)*) => {
        impl ApiError {
            $(
                $(#[$doc])*
                pub fn $name(m: impl Into<String>) -> ApiError {
                    ApiError::new(StatusCode::$status, $code, m)
                }
            )*
        }
    };
}

constructors! {
    bad_request => BAD_REQUEST, "bad_request";
    invalid => UNPROCESSABLE_ENTITY, "invalid";
    not_found => NOT_FOUND, "not_found";
    forbidden => FORBIDDEN, "forbidden";
    conflict => CONFLICT, "conflict";
    precondition_failed => PRECONDITION_FAILED, "precondition_failed";
    /// 413: a body, or a part of one, larger than its limit.
    too_large => PAYLOAD_TOO_LARGE, "payload_too_large";
    internal => INTERNAL_SERVER_ERROR, "internal";
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Json(json!({"error": {"code": self.code, "message": self.message}}));
        let mut resp = (self.status, body).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } => ApiError::conflict(e.to_string()),
            StoreError::InvalidKey(m) | StoreError::InvalidTxn(m) => ApiError::invalid(m),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::unavailable("the store is unavailable; retry")
            }
        }
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> ApiError {
        match e {
            JobError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            JobError::Invalid(m) => ApiError::invalid(m),
            JobError::Gone(m) => ApiError::new(StatusCode::GONE, "gone", m),
            JobError::Conflict(m) => ApiError::conflict(m),
            JobError::Session(m) => ApiError::new(StatusCode::CONFLICT, "session_conflict", m),
            JobError::Store(s) => s.into(),
            JobError::Corrupt { .. } => ApiError::corrupt(&e),
        }
    }
}

impl From<flux_core::rollout::RolloutError> for ApiError {
    fn from(e: flux_core::rollout::RolloutError) -> ApiError {
        use flux_core::rollout::RolloutError;
        match e {
            RolloutError::NotFound(m) => ApiError::not_found(format!("{m} not found")),
            RolloutError::Invalid(m) => ApiError::invalid(m),
            RolloutError::Conflict(m) => ApiError::conflict(m),
            RolloutError::Jobs(j) => j.into(),
            RolloutError::Store(s) => s.into(),
            RolloutError::Corrupt { .. } => ApiError::corrupt(&e),
        }
    }
}

/// The errors of the named, versioned objects a tenant declares (states, schedules): the same
/// variants, mapped alike.
macro_rules! from_declared_error {
    ($($t:ty),*) => {
        $(
            impl From<$t> for ApiError {
                fn from(e: $t) -> ApiError {
                    type E = $t;
                    match e {
                        E::NotFound(m) => ApiError::not_found(format!("{m} not found")),
                        E::Invalid(m) => ApiError::invalid(m),
                        E::Conflict(m) => ApiError::conflict(m),
                        E::PreconditionFailed(m) => ApiError::precondition_failed(m),
                        E::Store(s) => s.into(),
                        E::Jobs(j) => j.into(),
                        E::Quota(r) => r.into(),
                        E::Corrupt { .. } => ApiError::corrupt(&e),
                    }
                }
            }
        )*
    };
}

from_declared_error!(StateError, flux_core::schedule::ScheduleError);

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> ApiError {
        match e {
            AuthError::Store(s) => s.into(),
            AuthError::InvalidClaims(m) => ApiError::invalid(m),
            other => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", other.to_string()),
        }
    }
}

impl From<flux_core::enroll::EnrollError> for ApiError {
    fn from(e: flux_core::enroll::EnrollError) -> ApiError {
        use flux_core::enroll::EnrollError;
        match e {
            EnrollError::UsedUp { .. } => ApiError::forbidden(e.to_string()),
            EnrollError::Invalid(m) => ApiError::invalid(m),
            EnrollError::Contended => ApiError::conflict(e.to_string()),
            EnrollError::Auth(a) => a.into(),
            EnrollError::Store(s) => s.into(),
            EnrollError::Corrupt { .. } => {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
            }
        }
    }
}

impl From<QuotaError> for ApiError {
    fn from(e: QuotaError) -> ApiError {
        match e {
            QuotaError::Invalid(m) => ApiError::invalid(m),
            QuotaError::PreconditionFailed(m) => ApiError::precondition_failed(m),
            QuotaError::Store(s) => s.into(),
            QuotaError::Corrupt(_) => {
                // Unlike other corrupt objects, the answer names the tenant.
                tracing::error!(error = %e, "corrupt quota");
                ApiError::internal(e.to_string())
            }
        }
    }
}

impl From<AuditError> for ApiError {
    fn from(e: AuditError) -> ApiError {
        match e {
            AuditError::Store(s) => s.into(),
            e @ AuditError::Broken { .. } => {
                ApiError::new(StatusCode::CONFLICT, "audit_broken", e.to_string())
            }
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> ApiError {
        match e {
            BackupError::Store(StoreError::NotEmpty(n)) => ApiError::new(
                StatusCode::CONFLICT,
                "not_empty",
                format!("the store already holds {n} objects; restore with force to replace them"),
            ),
            BackupError::Store(s) => s.into(),
            other => ApiError::invalid(format!("not a valid backup: {other}")),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> ApiError {
        let retry = e.retry_after_secs();
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "quota_exceeded",
            e.to_string(),
        )
        .retry_after(retry)
    }
}

impl From<TenantError> for ApiError {
    fn from(e: TenantError) -> ApiError {
        match e {
            TenantError::Invalid(m) => ApiError::invalid(m),
            TenantError::Exists(_) => ApiError::conflict(e.to_string()),
            TenantError::Quota(q) => q.into(),
            TenantError::Store(s) => s.into(),
        }
    }
}
