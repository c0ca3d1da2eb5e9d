//! Tenants: the rules for their names and for the first admin token's lifetime, and their
//! creation. A tenant is created as its record (`_system/tenants/<name>`) and, when given, its
//! quota, in one transaction: a tenant never exists half made.
//!
//! Guarantees:
//! - a name starting with `_` (the system's own tenants) or invalid as a store tenant is
//!   refused before anything is read or written;
//! - creation of a tenant that exists (with objects, or created before) fails with
//!   [`TenantError::Exists`] and writes nothing; two concurrent creations of one name make one
//!   tenant.

use std::time::Duration;

use serde_json::json;

use crate::keys;
use crate::model::Millis;
use crate::quota::{self, Quota, QuotaError};
use crate::store::{Expect, Key, SYSTEM_TENANT, Store, StoreError, Txn, validate_tenant};

/// Lifetime of a new tenant's first admin token when none is asked for (one day).
pub const DEFAULT_ADMIN_TOKEN_TTL_SECS: u64 = 24 * 3600;
/// Longest lifetime of a new tenant's first admin token (366 days).
pub const MAX_ADMIN_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("{0}")]
    Invalid(String),
    #[error("tenant {0} already exists")]
    Exists(String),
    #[error(transparent)]
    Quota(#[from] QuotaError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether `name` may name a tenant made by users: not one of the system's own (`_…`), and a
/// valid store tenant.
pub fn validate_name(name: &str) -> Result<(), TenantError> {
    bound_name(name)?;
    if name.starts_with('_') {
        return Err(TenantError::Invalid(
            "tenant names may not start with '_'".into(),
        ));
    }
    validate_tenant(name).map_err(|e| TenantError::Invalid(e.to_string()))
}

/// Refuses a tenant name longer than any tenant's, without echoing it (it may be any size).
pub fn bound_name(name: &str) -> Result<(), TenantError> {
    if name.len() > crate::store::MAX_TENANT_LEN {
        return Err(TenantError::Invalid(format!(
            "tenant name is {} bytes; at most {}",
            name.len(),
            crate::store::MAX_TENANT_LEN
        )));
    }
    Ok(())
}

/// The lifetime of a new tenant's first admin token: `asked` seconds, or a day; between 1 s
/// and [`MAX_ADMIN_TOKEN_TTL_SECS`].
pub fn admin_token_ttl(asked: Option<u64>) -> Result<Duration, TenantError> {
    let ttl = asked.unwrap_or(DEFAULT_ADMIN_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > MAX_ADMIN_TOKEN_TTL_SECS {
        return Err(TenantError::Invalid(format!(
            "admin_token_ttl_secs must be between 1 and {MAX_ADMIN_TOKEN_TTL_SECS}"
        )));
    }
    Ok(Duration::from_secs(ttl))
}

/// Where a tenant's creation record is stored.
fn record_key(name: &str) -> Result<Key, StoreError> {
    Key::new(SYSTEM_TENANT, keys::tenant(name))
}

/// Creates tenant `name` (made by `created_by` at `now`) with `quota` if given.
pub async fn create(
    store: &dyn Store,
    name: &str,
    quota: Option<&Quota>,
    created_by: &str,
    now: Millis,
) -> Result<(), TenantError> {
    validate_name(name)?;
    if let Some(q) = quota {
        q.validate()?;
    }
    if store.tenants().await?.iter().any(|t| t == name) {
        return Err(TenantError::Exists(name.to_string()));
    }
    let body = serde_json::to_vec(&json!({
        "name": name, "created_by": created_by, "created_at": now
    }))
    .expect("records serialise");
    // The record and the quota in one transaction: a tenant never exists half made.
    let mut txn = Txn::new().put(record_key(name)?, body, Expect::Absent);
    if let Some(q) = quota {
        txn = txn.put(
            quota::key(name)?,
            serde_json::to_vec(q).expect("quotas serialise"),
            Expect::Absent,
        );
    }
    store.commit(txn).await.map_err(|e| match e {
        StoreError::Conflict { .. } => TenantError::Exists(name.to_string()),
        other => other.into(),
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_the_system_and_invalid_names_are_refused() {
        assert!(validate_name("acme").is_ok());
        let e = validate_name("_system").unwrap_err();
        assert_eq!(e.to_string(), "tenant names may not start with '_'");
        assert!(matches!(validate_name(""), Err(TenantError::Invalid(_))));
        assert!(matches!(
            validate_name("has space"),
            Err(TenantError::Invalid(_))
        ));
    }

    #[test]
    fn the_admin_token_lives_a_day_unless_asked_within_bounds() {
        assert_eq!(
            admin_token_ttl(None).unwrap(),
            Duration::from_secs(24 * 3600)
        );
        assert_eq!(admin_token_ttl(Some(60)).unwrap(), Duration::from_secs(60));
        assert_eq!(
            admin_token_ttl(Some(MAX_ADMIN_TOKEN_TTL_SECS)).unwrap(),
            Duration::from_secs(MAX_ADMIN_TOKEN_TTL_SECS)
        );
        for bad in [0, MAX_ADMIN_TOKEN_TTL_SECS + 1] {
            assert_eq!(
                admin_token_ttl(Some(bad)).unwrap_err().to_string(),
                "admin_token_ttl_secs must be between 1 and 31622400"
            );
        }
    }

    #[tokio::test]
    async fn a_tenant_is_created_once_with_its_quota() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let q = Quota {
            max_queued: Some(5),
            ..Quota::default()
        };
        create(store.as_ref(), "acme", Some(&q), "admin", 1)
            .await
            .unwrap();
        assert_eq!(quota::get(store.as_ref(), "acme").await.unwrap().0, q);
        assert!(matches!(
            create(store.as_ref(), "acme", None, "admin", 2).await,
            Err(TenantError::Exists(_))
        ));
        let bad = Quota {
            max_running: Some(0),
            ..Quota::default()
        };
        assert!(matches!(
            create(store.as_ref(), "globex", Some(&bad), "admin", 3).await,
            Err(TenantError::Quota(QuotaError::Invalid(_)))
        ));
        assert!(
            store
                .get(&record_key("globex").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
}
