//! The secret environment of a schedule's job: values given in a request
//! (`what.job.secret_env`) are stored apart from the schedule (`schedule_secrets/<name>`, never
//! returned by the API), and the schedule keeps, for each, a digest
//! (`hmac-sha256:<hex>` of the schedule's name, the variable's name and its value, under a
//! random key of the schedule's own that is stored with the values and never shown, so that a
//! digest cannot be used to guess a value offline), so that a
//! re-applied file or a re-sent spec is seen unchanged and a changed value shows in a diff
//! without either ever showing the value. At fire time the values are read and handed to the
//! jobs as an ad-hoc job's `secret_env` ([`crate::jobs::Jobs::prepare_run`]).
//!
//! Guarantees:
//! - the schedule record, its views, listings and plan diffs hold digests, never values;
//! - the values and the record are written in one transaction;
//! - a digest sent back (a spec copied from `schedule get`) keeps the value stored for that
//!   variable; a digest that matches no stored value is refused (the value must be given).

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::service::{Result, dec, enc};
use super::{ScheduleSpec, What};
use crate::keys;
use crate::store::{DynStore, Expect, Key, Txn};

const PREFIX: &str = "hmac-sha256:";

/// The entry of the stored values that holds the schedule's digest key (no variable can have
/// an empty name).
const KEY_ENTRY: &str = "";

/// The digest a schedule keeps for one secret variable's value, under the schedule's `key`.
pub fn digest(key: &str, schedule: &str, var: &str, value: &str) -> String {
    let mut h = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    for part in [schedule, var, value] {
        h.update(part.as_bytes());
        h.update(&[0u8]);
    }
    format!("{PREFIX}{}", hex::encode(h.finalize().into_bytes()))
}

fn looks_sealed(v: &str) -> bool {
    v.len() == PREFIX.len() + 64
        && v.starts_with(PREFIX)
        && v[PREFIX.len()..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Replaces the secret values of `spec` by their digests and returns the values to store:
/// the ones given, or for a digest given back, the one `stored` holds. Pure but for the
/// random keys.
///
/// `compare_clear` false (a plan for a caller who may not write schedules: a viewer's dry
/// run) digests each value given in clear under a fresh random key, so that it always plans
/// as a change: otherwise "unchanged" would tell such a caller that a guess equals the stored
/// value.
pub fn seal(
    spec: &mut ScheduleSpec,
    stored: &BTreeMap<String, String>,
    compare_clear: bool,
) -> std::result::Result<BTreeMap<String, String>, String> {
    let name = spec.name.clone();
    let What::Job(j) = &mut spec.what else {
        return Ok(BTreeMap::new());
    };
    if j.secret_env.is_empty() {
        return Ok(BTreeMap::new());
    }
    let key = stored
        .get(KEY_ENTRY)
        .cloned()
        .unwrap_or_else(|| hex::encode(rand::random::<[u8; 32]>()));
    let blind = (!compare_clear).then(|| hex::encode(rand::random::<[u8; 32]>()));
    let mut values = BTreeMap::new();
    for (var, v) in j.secret_env.iter_mut() {
        let (value, under) = match stored.get(var) {
            Some(old) if *v == digest(&key, &name, var, old) => (old.clone(), &key),
            _ if looks_sealed(v) => {
                return Err(format!(
                    "what.job.secret_env: the value of {var} is a digest of no value stored for this schedule; give the value"
                ));
            }
            _ => (v.clone(), blind.as_ref().unwrap_or(&key)),
        };
        *v = digest(under, &name, var, &value);
        values.insert(var.clone(), value);
    }
    values.insert(KEY_ENTRY.to_string(), key);
    Ok(values)
}

/// The secret values stored for schedule `name` (none when it has none).
pub(super) async fn load(
    store: &DynStore,
    tenant: &str,
    name: &str,
) -> Result<BTreeMap<String, String>> {
    let k = Key::new(tenant, keys::schedule_secrets(name))?;
    Ok(match store.get(&k).await? {
        Some(v) => dec(&k, &v.value)?,
        None => BTreeMap::new(),
    })
}

/// `txn` with the values of schedule `name` written (or removed, when there are none).
pub(super) fn write(
    txn: Txn,
    tenant: &str,
    name: &str,
    values: &BTreeMap<String, String>,
) -> Result<Txn> {
    let k = Key::new(tenant, keys::schedule_secrets(name))?;
    Ok(if values.is_empty() {
        txn.delete(k, Expect::Any)
    } else {
        txn.put(k, enc(values), Expect::Any)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::JobSpec;

    fn spec(secrets: &[(&str, &str)]) -> ScheduleSpec {
        ScheduleSpec {
            name: "n".into(),
            cron: "@daily".into(),
            tz: "UTC".into(),
            what: What::Job(JobSpec {
                command: Some("true".into()),
                secret_env: secrets
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..JobSpec::default()
            }),
            overlap: Default::default(),
            missed: Default::default(),
            grace_secs: 60,
            jitter_secs: 0,
            paused: false,
        }
    }

    #[test]
    fn values_are_replaced_by_digests_and_a_digest_sent_back_keeps_the_value() {
        let mut s = spec(&[("TOKEN", "hunter22"), ("KEY", "abcd")]);
        let values = seal(&mut s, &BTreeMap::new(), true).unwrap();
        assert_eq!(values["TOKEN"], "hunter22");
        let sealed = s.job().unwrap().secret_env.clone();
        let key = &values[KEY_ENTRY];
        assert_eq!(key.len(), 64, "a random key of the schedule's own");
        assert_eq!(sealed["TOKEN"], digest(key, "n", "TOKEN", "hunter22"));
        assert!(!serde_json::to_string(&s).unwrap().contains("hunter22"));
        assert!(!serde_json::to_string(&s).unwrap().contains(key.as_str()));
        // Another schedule of the same name and value gets another key, so another digest:
        // the digest says nothing of the value without the stored key.
        let mut other = spec(&[("TOKEN", "hunter22"), ("KEY", "abcd")]);
        seal(&mut other, &BTreeMap::new(), true).unwrap();
        assert_ne!(other, s);
        // The same spec again, or its sealed form sent back: the same record and values.
        let mut again = spec(&[("TOKEN", "hunter22"), ("KEY", "abcd")]);
        assert_eq!(seal(&mut again, &values, true).unwrap(), values);
        assert_eq!(again, s);
        let mut back = s.clone();
        assert_eq!(seal(&mut back, &values, true).unwrap(), values);
        assert_eq!(back, s);
        // A changed value changes the digest; a digest of nothing stored is refused.
        let mut changed = spec(&[("TOKEN", "hunter23"), ("KEY", "abcd")]);
        seal(&mut changed, &values, true).unwrap();
        assert_ne!(changed, s);
        let mut stray = s.clone();
        let e = seal(&mut stray, &BTreeMap::new(), true).unwrap_err();
        assert!(e.contains("what.job.secret_env"), "{e}");
        // Digests are per key, schedule and variable.
        assert_ne!(digest("k", "n", "A", "v"), digest("k", "m", "A", "v"));
        assert_ne!(digest("k", "n", "A", "v"), digest("k", "n", "B", "v"));
        assert_ne!(digest("k", "n", "A", "v"), digest("l", "n", "A", "v"));
    }

    /// A plan for a caller who may not write schedules cannot tell whether a value given in
    /// clear equals the stored one: it always differs from the stored record, while a digest
    /// sent back still matches.
    #[test]
    fn a_value_in_clear_is_never_compared_for_a_caller_who_may_not_write() {
        let mut stored = spec(&[("TOKEN", "hunter22")]);
        let values = seal(&mut stored, &BTreeMap::new(), true).unwrap();
        let mut guess = spec(&[("TOKEN", "hunter22")]);
        let planned = seal(&mut guess, &values, false).unwrap();
        assert_eq!(planned["TOKEN"], "hunter22");
        assert_ne!(guess, stored, "a right guess must not plan as unchanged");
        let key = &values[KEY_ENTRY];
        assert_ne!(
            guess.job().unwrap().secret_env["TOKEN"],
            digest(key, "n", "TOKEN", "hunter22"),
            "nor show its digest under the stored key"
        );
        let mut back = stored.clone();
        seal(&mut back, &values, false).unwrap();
        assert_eq!(back, stored);
    }
}
