//! Reading the services' stored objects back: every object under a prefix, decoded by the
//! service's own decoder, so that each service keeps its error type (and its `Corrupt`
//! variant) while the listing is written once.
//!
//! Guarantees:
//! - one `Store::list` snapshot: what is returned was stored together at one revision;
//! - an object that does not decode fails the whole read with the decoder's error; nothing is
//!   skipped in silence.

use crate::store::{Key, Range, Store, StoreError, Version};

/// The object at `k`, decoded from its JSON `bytes`; one that does not decode is the service's
/// error that `corrupt` makes of the key and the reason (its `Corrupt` variant).
pub(crate) fn decode<T: serde::de::DeserializeOwned, E>(
    k: &Key,
    bytes: &[u8],
    corrupt: impl FnOnce(String, String) -> E,
) -> Result<T, E> {
    serde_json::from_slice(bytes).map_err(|e| corrupt(k.to_string(), e.to_string()))
}

/// Every object of `tenant` whose path starts with `prefix`, in path order, decoded by `dec`,
/// with its version.
pub(crate) async fn list<T, E: From<StoreError>>(
    store: &dyn Store,
    tenant: &str,
    prefix: &str,
    dec: impl Fn(&Key, &[u8]) -> Result<T, E>,
) -> Result<Vec<(T, Version)>, E> {
    store
        .list(tenant, prefix)
        .await?
        .into_iter()
        .map(|e| Ok((dec(&e.key, &e.value)?, e.version)))
        .collect()
}

/// [`list`] for a prefix that usually holds fewer than `page` objects: one range read of
/// `page` entries (which costs what it returns), and the whole prefix only when that page is
/// full. Either way one snapshot.
pub(crate) async fn list_small<T, E: From<StoreError>>(
    store: &dyn Store,
    tenant: &str,
    prefix: &str,
    page: usize,
    dec: impl Fn(&Key, &[u8]) -> Result<T, E>,
) -> Result<Vec<(T, Version)>, E> {
    let first = store
        .list_range(tenant, &Range::first(prefix, page))
        .await?;
    let entries = if first.len() < page {
        first
    } else {
        store.list(tenant, prefix).await?
    };
    entries
        .into_iter()
        .map(|e| Ok((dec(&e.key, &e.value)?, e.version)))
        .collect()
}

/// `objects` (from [`list`]) keyed by the name `name` finds in each.
pub(crate) fn by_name<T>(
    objects: Vec<(T, Version)>,
    name: impl Fn(&T) -> &String,
) -> std::collections::BTreeMap<String, (T, Version)> {
    objects
        .into_iter()
        .map(|(o, v)| (name(&o).clone(), (o, v)))
        .collect()
}
