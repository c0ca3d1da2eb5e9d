//! Enrollment: an agent exchanges a bounded, multi-use enrollment token (role `enroll`, made by
//! `fluxctl token create --role enroll --uses N`) for its own credential, an agent token bound
//! to its node id, which it then renews itself over its normal connection.
//!
//! Uses are counted in the store, in the token's tenant (`enrollments/<jti>`, an
//! [`EnrollCounter`]). One enrollment is one transaction that expects the counter's version,
//! adds one use, and creates or updates the agent's record with the token's labels as admin
//! labels; concurrent enrollments that read the same count conflict, and all but one retry. The
//! decision itself ([`admit`]) is a pure function over the counter.
//!
//! Guarantees:
//! - a token good for N uses lets exactly N agents in, however many try at once and through
//!   however many nodes (the count is only ever moved by a compare-and-swap);
//! - an expired or revoked enrollment token is refused before the counter is read (401, by the
//!   node's authentication); a used-up one is refused with 403 naming the uses;
//! - the agent record made by an enrollment takes no work until the agent registers (it is
//!   created dead, never heard from), and an existing record keeps its registration, drain and
//!   labels; only the token's labels are added to its admin labels.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::auth::{AuthError, Authenticator, Claims, Role};
use crate::keys;
use crate::model::{Agent, AgentState, Millis, valid_ident};
use crate::store::{Expect, Key, Store, StoreError, Txn};
use crate::stored::decode;

/// Most uses one enrollment token may carry.
pub const MAX_USES: u32 = 100_000;
/// Most labels an enrollment token may carry.
pub const MAX_LABELS: usize = crate::model::MAX_LABELS;
/// Longest lifetime of an enrollment token (30 days: it is a fleet roll-out credential).
pub const MAX_ENROLL_TTL_SECS: u64 = 30 * 24 * 3600;
/// Times one enrollment retries a conflicting count before answering 409.
const RETRIES: u32 = 512;

/// How many uses of one enrollment token have been spent.
#[serde_with::skip_serializing_none]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollCounter {
    pub used: u32,
    pub uses: u32,
    /// The token's expiry (seconds since the epoch), for retention.
    pub exp: u64,
    /// The node enrolled last.
    pub last_node: Option<String>,
}

/// Why an enrollment was refused.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrollment token is used up: all {uses} of its uses are spent")]
    UsedUp { uses: u32 },
    #[error("{0}")]
    Invalid(String),
    #[error("the enrollment token is contended; retry")]
    Contended,
    #[error("the enrollment counter {key} is unreadable: {reason}")]
    Corrupt { key: String, reason: String },
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The counter after one more enrollment, or why there may be none. Pure.
pub fn admit(
    claims: &Claims,
    counter: Option<&EnrollCounter>,
) -> Result<EnrollCounter, EnrollError> {
    let uses = claims.uses.unwrap_or(0);
    let mut next = counter.cloned().unwrap_or(EnrollCounter {
        used: 0,
        uses,
        exp: claims.exp,
        last_node: None,
    });
    // The token's own count is the limit: a counter never raises it.
    next.uses = uses;
    if next.used >= uses {
        return Err(EnrollError::UsedUp { uses });
    }
    next.used += 1;
    Ok(next)
}

/// Checks what an enrollment request names; the error names the field.
pub fn validate_node_id(node_id: &str) -> Result<(), EnrollError> {
    if !valid_ident(node_id) || node_id.starts_with('_') {
        return Err(EnrollError::Invalid(
            "node_id: must be 1 to 128 characters of A-Z, a-z, 0-9, '.', '_' or '-', not starting with '_'"
                .into(),
        ));
    }
    Ok(())
}

/// Checks the labels an enrollment token is to carry; the error names the field.
pub fn validate_labels(labels: &BTreeMap<String, String>) -> Result<(), String> {
    if labels.len() > MAX_LABELS {
        return Err(format!("labels: at most {MAX_LABELS}"));
    }
    for (k, v) in labels {
        if !valid_ident(k) {
            return Err("labels: keys must be 1 to 128 characters of A-Z a-z 0-9 . _ -".into());
        }
        if v.is_empty()
            || v.len() > crate::model::MAX_LABEL_VALUE_BYTES
            || v.chars().any(char::is_control)
        {
            return Err(format!(
                "labels.{k}: value must be 1 to {} bytes without control characters",
                crate::model::MAX_LABEL_VALUE_BYTES
            ));
        }
    }
    Ok(())
}

/// What an enrollment handed out.
#[derive(Debug)]
pub struct Enrolled {
    pub token: String,
    pub claims: Claims,
    pub counter: EnrollCounter,
}

/// Spends one use of the (verified, unrevoked) enrollment token `claims` and issues agent
/// `node_id`'s credential, valid for `ttl`.
pub async fn enroll(
    store: &dyn Store,
    auth: &Authenticator,
    claims: &Claims,
    node_id: &str,
    ttl: Duration,
    now: Millis,
) -> Result<Enrolled, EnrollError> {
    if claims.role != Role::Enroll {
        return Err(EnrollError::Invalid("not an enrollment token".into()));
    }
    validate_node_id(node_id)?;
    let tenant = claims.tenant.as_str();
    let ck = Key::new(tenant, keys::enrollment(&claims.jti))?;
    let ak = Key::new(tenant, keys::agent(node_id))?;
    let corrupt = |key, reason| EnrollError::Corrupt { key, reason };
    for round in 0..RETRIES {
        let found = store.get(&ck).await?;
        let (counter, cexp) = match &found {
            Some(v) => (
                Some(decode::<EnrollCounter, _>(&ck, &v.value, corrupt)?),
                Expect::Version(v.version),
            ),
            None => (None, Expect::Absent),
        };
        let mut next = admit(claims, counter.as_ref())?;
        next.last_node = Some(node_id.to_string());
        let agent = store.get(&ak).await?;
        let (record, aexp) = match agent {
            Some(v) => {
                let mut a: Agent = decode(&ak, &v.value, corrupt)?;
                for (k, val) in &claims.labels {
                    a.admin_labels.insert(k.clone(), val.clone());
                }
                (a, Expect::Version(v.version))
            }
            None => (
                enrolled_agent(tenant, node_id, &claims.labels, now),
                Expect::Absent,
            ),
        };
        let txn = Txn::new()
            .put(
                ck.clone(),
                serde_json::to_vec(&next).expect("counter"),
                cexp,
            )
            .put(
                ak.clone(),
                serde_json::to_vec(&record).expect("agent"),
                aexp,
            );
        match store.commit(txn).await {
            Ok(_) => {
                let (token, issued) =
                    auth.issue(node_id, tenant, Role::Agent, ttl, Some(node_id))?;
                return Ok(Enrolled {
                    token,
                    claims: issued,
                    counter: next,
                });
            }
            Err(StoreError::Conflict { .. }) => {
                // Another enrollment moved the count: spread the retries a little.
                let spread = 1 + u64::from(round.min(20));
                tokio::time::sleep(Duration::from_millis(rand::random::<u64>() % spread)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(EnrollError::Contended)
}

/// The record of an agent that has enrolled and not registered yet: dead and never heard
/// from, so it takes no work and no sweep revives it before it registers.
pub fn enrolled_agent(
    tenant: &str,
    node_id: &str,
    labels: &BTreeMap<String, String>,
    now: Millis,
) -> Agent {
    Agent {
        node_id: node_id.to_string(),
        tenant: tenant.to_string(),
        labels: BTreeMap::new(),
        slots: 1,
        state: AgentState::Dead,
        registered_at: now,
        last_seen: 0,
        hostname: None,
        version: None,
        registration: None,
        admin_labels: labels.clone(),
        facts: Default::default(),
        drained: false,
        revoked_at: None,
    }
}

/// The credential an agent gets when it renews `claims` (its own, verified): the same tenant,
/// node and subject, for `ttl`.
pub fn renew(
    auth: &Authenticator,
    claims: &Claims,
    ttl: Duration,
) -> Result<(String, Claims), AuthError> {
    let node = claims
        .node_id
        .as_deref()
        .ok_or_else(|| AuthError::InvalidClaims("only an agent credential is renewed".into()))?;
    if claims.role != Role::Agent {
        return Err(AuthError::InvalidClaims(
            "only an agent credential is renewed".into(),
        ));
    }
    auth.issue(&claims.sub, &claims.tenant, Role::Agent, ttl, Some(node))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::SigningKey;

    fn enroll_claims(uses: u32) -> Claims {
        let a = Authenticator::new(vec![SigningKey::generate()], "i", "a");
        a.issue_enrollment("e", "acme", Duration::from_secs(60), uses, BTreeMap::new())
            .unwrap()
            .1
    }

    #[test]
    fn uses_are_counted_up_to_the_tokens_limit_and_never_past_it() {
        let c = enroll_claims(2);
        let one = admit(&c, None).unwrap();
        assert_eq!(one.used, 1);
        let two = admit(&c, Some(&one)).unwrap();
        assert_eq!(two.used, 2);
        assert!(matches!(
            admit(&c, Some(&two)),
            Err(EnrollError::UsedUp { uses: 2 })
        ));
        // A counter claiming more uses than the token carries raises nothing.
        let forged = EnrollCounter { uses: 100, ..two };
        assert!(matches!(
            admit(&c, Some(&forged)),
            Err(EnrollError::UsedUp { .. })
        ));
    }

    #[test]
    fn node_ids_and_labels_are_checked_naming_the_field() {
        assert!(validate_node_id("web-1").is_ok());
        for bad in ["", "a b", "_sys", "x/y"] {
            let e = validate_node_id(bad).unwrap_err().to_string();
            assert!(e.starts_with("node_id:"), "{e}");
        }
        let mut l = BTreeMap::new();
        l.insert("role".to_string(), "web".to_string());
        assert!(validate_labels(&l).is_ok());
        l.insert("bad key".to_string(), "v".to_string());
        assert!(validate_labels(&l).unwrap_err().starts_with("labels"));
    }

    #[test]
    fn a_fresh_enrolled_record_takes_no_work() {
        let a = enrolled_agent("acme", "n1", &BTreeMap::new(), 5);
        assert!(!a.takes_work());
        assert_eq!(a.last_seen, 0);
    }

    #[tokio::test]
    async fn concurrent_enrollments_spend_exactly_the_tokens_uses() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let auth = std::sync::Arc::new(Authenticator::new(vec![SigningKey::generate()], "i", "a"));
        let mut labels = BTreeMap::new();
        labels.insert("zone".to_string(), "eu".to_string());
        let (_, claims) = auth
            .issue_enrollment("e", "acme", Duration::from_secs(60), 7, labels)
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..12 {
            let (store, auth, claims) = (store.clone(), auth.clone(), claims.clone());
            tasks.push(tokio::spawn(async move {
                enroll(
                    store.as_ref(),
                    &auth,
                    &claims,
                    &format!("n{i}"),
                    Duration::from_secs(60),
                    1,
                )
                .await
            }));
        }
        let mut ok = 0;
        let mut used_up = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(e) => {
                    ok += 1;
                    assert_eq!(e.claims.role, Role::Agent);
                    assert_eq!(auth.verify(&e.token).unwrap().node_id, e.claims.node_id);
                }
                Err(EnrollError::UsedUp { uses: 7 }) => used_up += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!((ok, used_up), (7, 5));
        let agents = store.list("acme", keys::AGENTS).await.unwrap();
        assert_eq!(agents.len(), 7);
        let a: Agent = serde_json::from_slice(&agents[0].value).unwrap();
        assert_eq!(a.admin_labels.get("zone").map(String::as_str), Some("eu"));
    }
}
