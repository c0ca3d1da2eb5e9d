//! Tokens a test signs itself, with the node's own signing key or a stand-in for it: to show
//! what the node accepts and what it refuses (expired, forged, wrong audience).
//!
//! Guarantees:
//! - [`Fluxd::signing_key`] reads the key the node made when it started and fails the test when
//!   there is none, so a test never signs with a fresh key the node does not know.
//! - [`expired_token`] and [`forged_admin_token`] are wrong in exactly one way each: an `exp`
//!   5 s in the past, or a signature by another key presenting the node's key id.

use std::time::Duration;

use flux_core::auth::{Authenticator, Claims, Role, SigningKey};
use flux_core::model::now_ms;

use crate::Fluxd;

impl Fluxd {
    /// The signing key of this node, from its data directory.
    pub fn signing_key(&self) -> SigningKey {
        let (key, created) =
            SigningKey::load_or_create(&self.data_dir().join("signing-key.json")).unwrap();
        assert!(!created, "the node had no signing key");
        key
    }

    /// An authenticator with this node's signing key, issuer and audience: what it signs, the
    /// node accepts.
    pub fn authenticator(&self) -> Authenticator {
        Authenticator::new(vec![self.signing_key()], "fluxforge", "fluxforge")
    }
}

/// `claims`, signed by `auth` with an `exp` 5 s in the past.
pub fn expired_token(auth: &Authenticator, claims: &Claims) -> String {
    let mut c = claims.clone();
    c.exp = now_ms() / 1000 - 5;
    auth.sign(&c).unwrap()
}

/// An admin token of tenant `default` signed by another key that presents the id of `key`.
pub fn forged_admin_token(key: &SigningKey) -> String {
    let mut other = SigningKey::generate();
    other.kid = key.kid.clone();
    Authenticator::new(vec![other], "fluxforge", "fluxforge")
        .issue("t", "default", Role::Admin, Duration::from_secs(60), None)
        .unwrap()
        .0
}
