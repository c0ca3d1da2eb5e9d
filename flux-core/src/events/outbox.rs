//! Events of changes kept in the cluster's own tenant (token revocations live in `_system`, and
//! one transaction spans one tenant): the change and its event's *outbox entry* commit together
//! in `_system`; [`deliver`] then moves the event into the tenant's log, once.
//!
//! A delivery is one tenant transaction: the event ([`super::record`]) and a marker
//! (`event_emitted/{id}`, expected absent), so of two deliveries of one entry (the revoking
//! call and the leader's sweep, or a retried call) exactly one writes the event; the entry is
//! removed afterwards. A crash between the change and the delivery leaves the entry, which the
//! revoking call's retry or the leader's next sweep ([`drain`], fenced) delivers.
//!
//! Guarantees:
//! - The event exists if and only if its change committed, exactly once: the entry commits with
//!   the change, and the marker is written with the event under CAS.
//! - A revocation is followed by its event within one leader sweep at most (the garbage
//!   collection tick), at once when the revoking call completes normally.
//! - A sweep reads and delivers at most its batch of entries.

use serde::{Deserialize, Serialize};

use super::Event;
use crate::store::{
    Epoch, Expect, Key, Range, SYSTEM_TENANT, Store, StoreError, Txn, validate_tenant,
};

/// Prefix of the outbox entries in `_system`: `event_outbox/{tenant}/{id}`.
pub const OUTBOX: &str = "event_outbox/";
/// Prefix of the delivery markers in each tenant: `event_emitted/{id}`.
pub const EMITTED: &str = "event_emitted/";

/// One staged event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub tenant: String,
    pub event: Event,
}

fn outbox_key(tenant: &str, id: &str) -> Result<Key, StoreError> {
    validate_tenant(tenant)?;
    Key::new(SYSTEM_TENANT, format!("{OUTBOX}{tenant}/{id}"))
}

/// Adds to `txn` (a `_system` transaction) the outbox entry of `event` for `tenant` under `id`,
/// unique per change (a token id, a node revocation's instant).
pub fn stage(txn: &mut Txn, tenant: &str, id: &str, event: &Event) -> Result<(), StoreError> {
    let body = serde_json::to_vec(&Pending {
        tenant: tenant.to_string(),
        event: event.clone(),
    })
    .expect("staged events serialize");
    txn.ops.push(crate::store::Op::Put {
        key: outbox_key(tenant, id)?,
        value: body,
        expect: Expect::Absent,
    });
    Ok(())
}

/// Moves the staged event `id` of `tenant` into the tenant's log if it is still staged;
/// whether this call wrote it. `fence`: the leader's epoch, for its sweep.
pub async fn deliver(
    store: &dyn Store,
    tenant: &str,
    id: &str,
    fence: Option<Epoch>,
) -> Result<bool, StoreError> {
    let k = outbox_key(tenant, id)?;
    let Some(v) = store.get(&k).await? else {
        return Ok(false);
    };
    deliver_entry(store, &k, v.version, &v.value, tenant, id, fence).await
}

async fn deliver_entry(
    store: &dyn Store,
    k: &Key,
    version: crate::store::Version,
    value: &[u8],
    tenant: &str,
    id: &str,
    fence: Option<Epoch>,
) -> Result<bool, StoreError> {
    let wrote = match serde_json::from_slice::<Pending>(value) {
        Ok(p) if p.tenant == tenant => {
            let mut txn = Txn::new().put(
                Key::new(tenant, format!("{EMITTED}{id}"))?,
                Vec::new(),
                Expect::Absent,
            );
            txn.fence = fence;
            super::record(&mut txn, tenant, &p.event)?;
            // Not landed: delivered already (by a racing call or before a crash).
            crate::store::landed(store.commit(txn).await)?
        }
        // Unreadable, or naming another tenant than its path: nothing to deliver.
        _ => {
            tracing::warn!(key = %k, "unreadable event outbox entry dropped");
            false
        }
    };
    let mut txn = Txn::new().delete(k.clone(), Expect::Version(version));
    txn.fence = fence;
    match store.commit(txn).await {
        Ok(_) | Err(StoreError::Conflict { .. }) => Ok(wrote),
        Err(e) => Err(e),
    }
}

/// The leader's sweep: delivers up to `batch` staged events left by a crash; how many it wrote.
pub async fn drain(store: &dyn Store, epoch: Epoch, batch: usize) -> Result<usize, StoreError> {
    let mut wrote = 0;
    for e in store
        .list_range(SYSTEM_TENANT, &Range::first(OUTBOX, batch))
        .await?
    {
        let parsed = e
            .key
            .path()
            .strip_prefix(OUTBOX)
            .and_then(|r| r.split_once('/'))
            .map(|(t, id)| (t.to_string(), id.to_string()))
            .filter(|(t, _)| validate_tenant(t).is_ok());
        let Some((tenant, id)) = parsed else {
            // An entry that can never be delivered (no tenant in its path): removed, so that
            // it does not hold a place at the front of every batch.
            tracing::warn!(key = %e.key, "undeliverable event outbox entry removed");
            let txn = Txn::new()
                .fenced(epoch)
                .delete(e.key.clone(), Expect::Version(e.version));
            match store.commit(txn).await {
                Ok(_) | Err(StoreError::Conflict { .. }) => {}
                Err(err) => return Err(err),
            }
            continue;
        };
        match deliver_entry(
            store,
            &e.key,
            e.version,
            &e.value,
            &tenant,
            &id,
            Some(epoch),
        )
        .await
        {
            Ok(done) => wrote += usize::from(done),
            Err(err @ StoreError::Fenced { .. }) => return Err(err),
            // One entry that fails (its tenant unwritable, say) waits for the next pass
            // without holding up the others, nor the rest of garbage collection.
            Err(err) => {
                tracing::warn!(tenant = %tenant, id = %id, error = %err, "event outbox entry not delivered; retried next pass");
            }
        }
    }
    Ok(wrote)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Position, read};

    async fn revoked_events(store: &dyn Store) -> Vec<String> {
        read(store, "acme", Position::default(), 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|l| l.event.kind == "token.revoked")
            .map(|l| l.event.object)
            .collect()
    }

    /// A revocation, its retry and a sweep: one event. A crash after the revocation's commit
    /// (its event only staged): the retry of the call, or else the leader's sweep, writes it,
    /// once, and a racing pair of both writes it once.
    #[tokio::test]
    async fn a_revocation_has_its_event_once_across_retries_crashes_and_sweeps() {
        let (_dir, s) = crate::testing::temp_redb().await;
        crate::auth::revoke(s.as_ref(), "j1", "acme", u64::MAX / 2)
            .await
            .unwrap();
        crate::auth::revoke(s.as_ref(), "j1", "acme", u64::MAX / 2)
            .await
            .unwrap();
        let epoch = s.next_epoch().await.unwrap();
        assert_eq!(drain(s.as_ref(), epoch, 10).await.unwrap(), 0);
        assert_eq!(revoked_events(s.as_ref()).await, ["j1"]);

        // The first half of a revocation of j2 and of j3, as a crash leaves them.
        for jti in ["j2", "j3"] {
            let ev = Event::new("token.revoked", jti, 1);
            let mut txn = Txn::new().put(
                Key::new(SYSTEM_TENANT, crate::keys::revoked("acme", jti)).unwrap(),
                b"{}".to_vec(),
                Expect::Absent,
            );
            stage(&mut txn, "acme", jti, &ev).unwrap();
            s.commit(txn).await.unwrap();
        }
        assert_eq!(revoked_events(s.as_ref()).await, ["j1"], "only staged");
        // j2: the call is retried; it meets the revocation (a conflict) and delivers.
        crate::auth::revoke(s.as_ref(), "j2", "acme", u64::MAX / 2)
            .await
            .unwrap();
        assert_eq!(revoked_events(s.as_ref()).await, ["j1", "j2"]);
        // j3: nobody retries; the sweep and a late delivery race, one event.
        let (a, b) = tokio::join!(
            drain(s.as_ref(), epoch, 10),
            deliver(s.as_ref(), "acme", "j3", None)
        );
        assert_eq!(a.unwrap() + usize::from(b.unwrap()), 1);
        assert_eq!(drain(s.as_ref(), epoch, 10).await.unwrap(), 0);
        assert_eq!(revoked_events(s.as_ref()).await, ["j1", "j2", "j3"]);
        assert!(s.list(SYSTEM_TENANT, OUTBOX).await.unwrap().is_empty());
        // A sweep under a stale epoch writes nothing.
        let ev = Event::new("token.revoked", "j4", 1);
        let mut txn = Txn::new();
        stage(&mut txn, "acme", "j4", &ev).unwrap();
        s.commit(txn).await.unwrap();
        s.next_epoch().await.unwrap();
        assert!(matches!(
            drain(s.as_ref(), epoch, 10).await,
            Err(StoreError::Fenced { .. })
        ));
        assert_eq!(revoked_events(s.as_ref()).await, ["j1", "j2", "j3"]);
    }

    /// An entry that names no tenant is removed by the sweep, and the entries behind it are
    /// still delivered.
    #[tokio::test]
    async fn an_undeliverable_entry_is_removed_without_holding_up_the_rest() {
        let (_dir, s) = crate::testing::temp_redb().await;
        let bad = Key::new(SYSTEM_TENANT, format!("{OUTBOX}0-no-tenant")).unwrap();
        s.put(bad, b"{}".to_vec(), Expect::Absent).await.unwrap();
        let mut txn = Txn::new();
        stage(
            &mut txn,
            "acme",
            "j9",
            &Event::new("token.revoked", "j9", 1),
        )
        .unwrap();
        s.commit(txn).await.unwrap();
        let epoch = s.next_epoch().await.unwrap();
        assert_eq!(drain(s.as_ref(), epoch, 10).await.unwrap(), 1);
        assert_eq!(revoked_events(s.as_ref()).await, ["j9"]);
        assert!(s.list(SYSTEM_TENANT, OUTBOX).await.unwrap().is_empty());
    }

    /// Node revocations: each call is its own event.
    #[tokio::test]
    async fn node_revocations_write_their_event_in_the_tenant() {
        let (_dir, s) = crate::testing::temp_redb().await;
        crate::auth::revoke_node(s.as_ref(), "acme", "web-1")
            .await
            .unwrap();
        assert_eq!(revoked_events(s.as_ref()).await, ["node=web-1"]);
        assert!(s.list(SYSTEM_TENANT, OUTBOX).await.unwrap().is_empty());
    }
}
