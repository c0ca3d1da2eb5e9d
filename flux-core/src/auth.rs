//! Authentication and authorisation: JWT issue and verification, roles and their permissions,
//! signing keys on disk, and revocation by `jti` recorded in the store.
//!
//! Tokens are HS256 JWTs whose algorithm is pinned by the server (the header's `alg` is never
//! trusted: `none` and every other algorithm are rejected), carry a `kid` naming the key that
//! signed them so keys can be rotated, and must match the configured issuer and audience.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::{now_ms, valid_ident};
use crate::named::named_enum;
use crate::store::{Expect, Key, SYSTEM_TENANT, Store, StoreError, Txn};

/// Errors of authentication. Every variant but `Store` means "401 Unauthorized" to a client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token given")]
    Missing,
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error("token signed with an unknown key id {0:?}")]
    UnknownKey(String),
    #[error("token algorithm {0} is not accepted (only HS256)")]
    Algorithm(String),
    #[error("token has expired")]
    Expired,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token issuer or audience does not match this cluster")]
    WrongAudience,
    #[error("token has been revoked")]
    Revoked,
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    #[error("signing key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

named_enum! {
    /// The roles of DESIGN §7.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    #[strum(serialize_all = "lowercase")]
    pub enum Role {
        Admin,
        Operator,
        Viewer,
        Agent,
        /// A bounded, multi-use enrollment token: it may only be exchanged for an agent's own
        /// credential (`POST /v1/enroll`), at most `uses` times.
        Enroll,
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        Role::parse(s).ok_or_else(|| format!("unknown role {s:?} ({})", Role::names()))
    }
}

/// What a route needs. Checked with [`Role::allows`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    ReadJobs,
    SubmitJobs,
    CancelJobs,
    ReadAgents,
    ReadCluster,
    ReadStates,
    /// Create, change and delete desired states.
    ManageStates,
    ManageTokens,
    /// Register, heartbeat, poll tasks and report attempts: agents only.
    AgentProtocol,
    /// Exchange an enrollment token for an agent credential: enrollment tokens only.
    Enroll,
    /// Drain and uncordon agents.
    ManageAgents,
}

impl Role {
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => !matches!(p, AgentProtocol | Enroll),
            Role::Operator => matches!(
                p,
                ReadJobs
                    | SubmitJobs
                    | CancelJobs
                    | ReadAgents
                    | ReadCluster
                    | ReadStates
                    | ManageStates
                    | ManageAgents
            ),
            Role::Viewer => matches!(p, ReadJobs | ReadAgents | ReadCluster | ReadStates),
            Role::Agent => matches!(p, AgentProtocol),
            Role::Enroll => matches!(p, Enroll),
        }
    }
}

/// Claims of a FluxForge token.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant: String,
    pub role: Role,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    pub iss: String,
    pub aud: String,
    /// Set on agent tokens: the node the agent runs as.
    pub node_id: Option<String>,
    /// Set on enrollment tokens: how many agents may enroll with it.
    pub uses: Option<u32>,
    /// Set on enrollment tokens: admin labels given to every agent enrolled with it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Claims {
    /// Whether the token's `exp` (whole seconds) has come, by this host's clock.
    pub fn expired(&self) -> bool {
        self.exp <= now_ms() / 1000
    }

    /// Claims for tests: `role`, `tenant` and `node` as given, placeholder names, times zero.
    #[cfg(any(test, feature = "testing"))]
    pub fn sample(role: Role, tenant: &str, node: Option<&str>) -> Claims {
        Claims {
            sub: "s".into(),
            tenant: tenant.into(),
            role,
            iat: 0,
            exp: 0,
            jti: "j".into(),
            iss: "i".into(),
            aud: "a".into(),
            node_id: node.map(String::from),
            uses: None,
            labels: BTreeMap::new(),
        }
    }
}

/// An HMAC signing key with its id.
#[derive(Clone, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    pub alg: String,
    /// Base64 of the secret (32 random bytes when generated).
    secret: String,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh random key.
    pub fn generate() -> SigningKey {
        let secret: [u8; 32] = rand::random();
        let kid: [u8; 6] = rand::random();
        SigningKey {
            kid: hex::encode(kid),
            alg: "HS256".into(),
            secret: B64.encode(secret),
        }
    }

    fn secret_bytes(&self) -> Result<Vec<u8>, String> {
        let b = B64
            .decode(&self.secret)
            .map_err(|e| format!("secret is not base64: {e}"))?;
        if b.len() < 32 {
            return Err(format!("secret is {} bytes; at least 32 needed", b.len()));
        }
        Ok(b)
    }

    /// Loads the key at `path`, or creates it (mode 0600) when the file does not exist.
    /// Returns whether it was created. An existing but unreadable or invalid file is an error
    /// and is never overwritten.
    /// A key for another purpose (the audit chain's MAC, say), derived from this secret with
    /// HMAC-SHA-256 over `purpose`: nodes sharing the signing key share it, and the store never
    /// holds it.
    pub fn derive(&self, purpose: &str) -> Result<[u8; 32], AuthError> {
        use hmac::{Hmac, Mac};
        let secret = self.secret_bytes().map_err(AuthError::Malformed)?;
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(&secret)
            .map_err(|e| AuthError::Malformed(e.to_string()))?;
        mac.update(purpose.as_bytes());
        Ok(mac.finalize().into_bytes().into())
    }

    pub fn load_or_create(path: &Path) -> Result<(SigningKey, bool), AuthError> {
        let err = |message: String| AuthError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        match SigningKey::load(path) {
            Ok(key) => Ok((key, false)),
            Err(AuthError::KeyFile { .. }) if matches!(path.try_exists(), Ok(false)) => {
                let key = SigningKey::generate();
                let body = serde_json::to_vec_pretty(&key).map_err(|e| err(e.to_string()))?;
                crate::files::create_private(path, &body).map_err(|e| err(e.to_string()))?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    /// Loads the key at `path`, which must exist (a key kept for verification only).
    pub fn load(path: &Path) -> Result<SigningKey, AuthError> {
        let err = |message: String| AuthError::KeyFile {
            path: path.display().to_string(),
            message,
        };
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key: SigningKey =
            serde_json::from_slice(&bytes).map_err(|e| err(format!("not a signing key: {e}")))?;
        if key.alg != "HS256" {
            return Err(err(format!("algorithm {} is not supported", key.alg)));
        }
        if !valid_ident(&key.kid) {
            return Err(err("kid is not a valid identifier".into()));
        }
        key.secret_bytes().map_err(err)?;
        Ok(key)
    }
}

/// Loads the keys of a rotation: the first (the active key, which signs) is created when its
/// file does not exist; the others only verify and must exist. Two files with the same `kid`
/// are refused. Returns the keys in order and whether the first was created.
pub fn load_key_ring(paths: &[std::path::PathBuf]) -> Result<(Vec<SigningKey>, bool), AuthError> {
    let Some((first, rest)) = paths.split_first() else {
        return Err(AuthError::KeyFile {
            path: String::new(),
            message: "at least one signing key is needed".into(),
        });
    };
    let (active, created) = SigningKey::load_or_create(first)?;
    let mut keys = vec![active];
    for p in rest {
        let k = SigningKey::load(p)?;
        if keys.iter().any(|o| o.kid == k.kid) {
            return Err(AuthError::KeyFile {
                path: p.display().to_string(),
                message: format!("kid {} is listed twice", k.kid),
            });
        }
        keys.push(k);
    }
    Ok((keys, created))
}

/// Longest token subject.
pub const MAX_SUBJECT_LEN: usize = 128;

/// Subjects the system gives itself: the bootstrap admin token's and the reconciler's (the
/// `submitted_by` of its jobs). No minted token may claim them.
pub const RESERVED_SUBJECTS: &[&str] = &["bootstrap-admin", crate::reconcile::RECONCILER];

/// Whether `subject` may name the holder of a minted token: 1 to [`MAX_SUBJECT_LEN`] bytes of
/// A-Z, a-z, 0-9, '.', '_' or '-', not starting with '_' and not a reserved subject. The error
/// text never echoes the subject.
pub fn validate_subject(subject: &str) -> Result<(), String> {
    if !valid_ident(subject) {
        return Err(format!(
            "subject must be 1 to {MAX_SUBJECT_LEN} characters of A-Z, a-z, 0-9, '.', '_' or '-'"
        ));
    }
    if subject.starts_with('_')
        || RESERVED_SUBJECTS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(subject))
    {
        return Err(format!(
            "subject {subject:?} is reserved for the system's own tokens"
        ));
    }
    Ok(())
}

/// Issues and verifies tokens. The first key signs; every key verifies (rotation).
#[derive(Clone)]
pub struct Authenticator {
    keys: Vec<(SigningKey, EncodingKey, DecodingKey)>,
    issuer: String,
    audience: String,
    /// Tokens verified so far, shared by clones (which have the same keys).
    verified: std::sync::Arc<Verified>,
}

/// Most tokens an [`Authenticator`] remembers as verified. Past that, the memo forgets by
/// S3-FIFO ([`quick_cache`]): a token seen once (one that was renewed and never came back, or a
/// burst of new ones) is forgotten before a token in use, so a churn of short-lived tokens
/// costs those tokens their full verification but not the fleet's.
///
/// Every agent has a token of its own and presents it at every poll, so the memo must hold a
/// node's whole fleet: with fewer entries than tokens in turn, each token is forgotten before
/// it comes back and every request pays the full verification (at 100,000 simulated agents
/// and the old bound of 8,192, that and the refilling were 12 % of an idle fluxd's samples).
/// An entry is the token's SHA-256 and most of its claims ([`Remembered`]).
pub const VERIFIED_MAX: usize = 131_072;

/// The claims of tokens that passed [`Authenticator::verify`], by the SHA-256 of the whole
/// token text.
///
/// Sound because a verification depends on nothing but the token, the keys, the issuer and the
/// audience, which an authenticator never changes, and on the time, which only matters through
/// `exp`: a remembered token is checked against the clock again on every use. Only tokens that
/// passed are remembered, and only tokens signed with one of the keys can pass, so what fills
/// it was issued here; a token that differs from a remembered one in any byte has another
/// digest (finding two tokens with one SHA-256 is as hard as breaking SHA-256) and is verified
/// in full. Revocation is not part of a verification and is still checked by the caller.
struct Verified {
    claims: quick_cache::sync::Cache<TokenDigest, std::sync::Arc<Remembered>>,
}

/// What [`Verified`] keeps of a token's claims: all but `iss` and `aud`, which are the
/// authenticator's own in every token that passed, with the strings boxed.
#[derive(Clone, Debug)]
struct Remembered {
    sub: Box<str>,
    tenant: Box<str>,
    jti: Box<str>,
    node_id: Option<Box<str>>,
    labels: BTreeMap<String, String>,
    role: Role,
    uses: Option<u32>,
    iat: u64,
    exp: u64,
}

impl Remembered {
    fn of(c: &Claims) -> Remembered {
        Remembered {
            sub: c.sub.as_str().into(),
            tenant: c.tenant.as_str().into(),
            jti: c.jti.as_str().into(),
            node_id: c.node_id.as_deref().map(Into::into),
            labels: c.labels.clone(),
            role: c.role,
            uses: c.uses,
            iat: c.iat,
            exp: c.exp,
        }
    }

    /// The claims, with `iss` and `aud` as given.
    fn claims(&self, issuer: &str, audience: &str) -> Claims {
        Claims {
            sub: self.sub.to_string(),
            tenant: self.tenant.to_string(),
            role: self.role,
            iat: self.iat,
            exp: self.exp,
            jti: self.jti.to_string(),
            iss: issuer.to_string(),
            aud: audience.to_string(),
            node_id: self.node_id.as_deref().map(str::to_string),
            uses: self.uses,
            labels: self.labels.clone(),
        }
    }
}

type TokenDigest = [u8; 32];

fn token_digest(token: &str) -> TokenDigest {
    use sha2::{Digest, Sha256};
    Sha256::digest(token.as_bytes()).into()
}

impl Default for Verified {
    fn default() -> Self {
        Verified::holding(VERIFIED_MAX)
    }
}

impl Verified {
    fn holding(max: usize) -> Verified {
        Verified {
            claims: quick_cache::sync::Cache::new(max),
        }
    }

    /// The remembered claims of the token with `digest`, whose `iss` and `aud` were `issuer`
    /// and `audience`. (The entry is shared, so the claims are built outside the memo's lock.)
    fn get(&self, digest: &TokenDigest, issuer: &str, audience: &str) -> Option<Claims> {
        Some(self.claims.get(digest)?.claims(issuer, audience))
    }

    fn remember(&self, digest: TokenDigest, claims: &Claims) {
        self.claims
            .insert(digest, std::sync::Arc::new(Remembered::of(claims)));
    }

    fn forget(&self, digest: &TokenDigest) {
        self.claims.remove(digest);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.claims.len()
    }

    /// Replaces what is remembered of a token (tests mark a memo hit this way).
    #[cfg(test)]
    fn edit(&self, digest: &TokenDigest, f: impl FnOnce(&mut Remembered)) {
        let mut r = Remembered::clone(&self.claims.get(digest).expect("remembered"));
        f(&mut r);
        self.claims.insert(*digest, std::sync::Arc::new(r));
    }
}

impl Authenticator {
    /// # Panics
    /// When `keys` is empty or a key's secret is invalid; keys come from
    /// [`SigningKey::load_or_create`] or [`SigningKey::generate`], which validate them.
    pub fn new(keys: Vec<SigningKey>, issuer: &str, audience: &str) -> Authenticator {
        assert!(!keys.is_empty(), "an authenticator needs at least one key");
        let keys = keys
            .into_iter()
            .map(|k| {
                let secret = k.secret_bytes().expect("signing key validated on load");
                let enc = EncodingKey::from_secret(&secret);
                let dec = DecodingKey::from_secret(&secret);
                (k, enc, dec)
            })
            .collect();
        Authenticator {
            keys,
            issuer: issuer.to_string(),
            audience: audience.to_string(),
            verified: Default::default(),
        }
    }

    /// Signs a new token.
    pub fn issue(
        &self,
        sub: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
        node_id: Option<&str>,
    ) -> Result<(String, Claims), AuthError> {
        if role == Role::Agent && node_id.is_none() {
            return Err(AuthError::InvalidClaims(
                "an agent token needs a node id".into(),
            ));
        }
        if role == Role::Enroll {
            return Err(AuthError::InvalidClaims(
                "an enrollment token is made with issue_enrollment".into(),
            ));
        }
        self.issue_claims(sub, tenant, role, ttl, node_id, None, BTreeMap::new())
    }

    /// Signs a new enrollment token good for `uses` enrollments, whose agents get `labels`
    /// as admin labels.
    pub fn issue_enrollment(
        &self,
        sub: &str,
        tenant: &str,
        ttl: Duration,
        uses: u32,
        labels: BTreeMap<String, String>,
    ) -> Result<(String, Claims), AuthError> {
        if uses == 0 {
            return Err(AuthError::InvalidClaims(
                "an enrollment token needs at least one use".into(),
            ));
        }
        self.issue_claims(sub, tenant, Role::Enroll, ttl, None, Some(uses), labels)
    }

    #[allow(clippy::too_many_arguments)]
    fn issue_claims(
        &self,
        sub: &str,
        tenant: &str,
        role: Role,
        ttl: Duration,
        node_id: Option<&str>,
        uses: Option<u32>,
        labels: BTreeMap<String, String>,
    ) -> Result<(String, Claims), AuthError> {
        let now = now_ms() / 1000;
        let jti: [u8; 16] = rand::random();
        let claims = Claims {
            sub: sub.to_string(),
            tenant: tenant.to_string(),
            role,
            iat: now,
            exp: now + ttl.as_secs().max(1),
            jti: hex::encode(jti),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            node_id: node_id.map(str::to_string),
            uses,
            labels,
        };
        self.sign(&claims).map(|t| (t, claims))
    }

    /// The key id new tokens are signed with (the first key).
    pub fn active_kid(&self) -> &str {
        &self.keys[0].0.kid
    }

    /// Every key id accepted for verification, the active one first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|(k, _, _)| k.kid.as_str()).collect()
    }

    /// Signs arbitrary claims with the current key (tests use it to forge edge cases).
    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        let (key, enc, _) = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, enc).map_err(|e| AuthError::Malformed(e.to_string()))
    }

    /// Verifies signature, algorithm, key id, expiry, issuer and audience, and the shape of the
    /// claims. Revocation is checked separately ([`is_revoked`], or a node's
    /// [`crate::revocations::RevocationCache`]).
    ///
    /// A token that passed before is only checked for expiry again (see [`Verified`]): the
    /// signature check and the decoding of its parts were about 40 % of what a request cost in
    /// fluxd's layers, and every agent and client presents the same token call after call.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let digest = token_digest(token);
        if let Some(c) = self.verified.get(&digest, &self.issuer, &self.audience) {
            if c.expired() {
                self.verified.forget(&digest);
                return Err(AuthError::Expired);
            }
            return Ok(c);
        }
        let c = self.verify_in_full(token)?;
        self.verified.remember(digest, &c);
        Ok(c)
    }

    /// [`Authenticator::verify`] without the memo.
    fn verify_in_full(&self, token: &str) -> Result<Claims, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::HS256 {
            return Err(AuthError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("token has no kid".into()))?;
        let (_, _, dec) = self
            .keys
            .iter()
            .find(|(k, _, _)| k.kid == kid)
            .ok_or(AuthError::UnknownKey(kid))?;
        let mut v = Validation::new(Algorithm::HS256);
        v.leeway = 0;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, dec, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm("mismatch".into()),
                _ => AuthError::Malformed(e.to_string()),
            }
        })?;
        let c = data.claims;
        // `exp` is checked by the library with zero leeway; double-check against our clock.
        if c.expired() {
            return Err(AuthError::Expired);
        }
        if crate::store::validate_tenant(&c.tenant).is_err() || c.tenant.starts_with('_') {
            return Err(AuthError::Malformed("token tenant is not valid".into()));
        }
        if !valid_ident(&c.jti) {
            return Err(AuthError::Malformed("token jti is not valid".into()));
        }
        if !valid_ident(&c.sub) {
            return Err(AuthError::Malformed("token subject is not valid".into()));
        }
        match (&c.role, &c.node_id) {
            (Role::Agent, None) => {
                return Err(AuthError::Malformed("agent token without node id".into()));
            }
            (_, Some(n)) if !valid_ident(n) => {
                return Err(AuthError::Malformed("token node id is not valid".into()));
            }
            _ => {}
        }
        match (&c.role, c.uses) {
            (Role::Enroll, None | Some(0)) => {
                return Err(AuthError::Malformed(
                    "enrollment token without a number of uses".into(),
                ));
            }
            (Role::Enroll, _) if c.node_id.is_some() => {
                return Err(AuthError::Malformed(
                    "enrollment token bound to a node".into(),
                ));
            }
            (Role::Enroll, _) => {}
            (_, Some(_)) => {
                return Err(AuthError::Malformed(
                    "only enrollment tokens carry a number of uses".into(),
                ));
            }
            _ => {}
        }
        Ok(c)
    }
}

/// Extracts the token from an `Authorization` header value.
pub fn bearer(header_value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = header_value
        .split_once(' ')
        .ok_or_else(|| AuthError::Malformed("expected 'Bearer <token>'".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(AuthError::Malformed("expected 'Bearer <token>'".into()));
    }
    Ok(token.trim())
}

/// Reads a token's claims WITHOUT verifying it. Only for a holder inspecting its own token (an
/// agent learning its node id, fluxctl showing an expiry); never for authorisation.
pub fn peek_claims(token: &str) -> Option<Claims> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

/// Tenant whose admins administer the whole cluster: they may issue and revoke tokens of any
/// tenant. The bootstrap admin token belongs to it. Admins of other tenants manage only their own.
pub const CLUSTER_TENANT: &str = "default";

impl Claims {
    /// Whether these claims may manage tokens of `tenant`.
    pub fn may_administer(&self, tenant: &str) -> bool {
        self.role == Role::Admin && (self.tenant == tenant || self.tenant == CLUSTER_TENANT)
    }
}

/// Revocations are keyed by tenant and jti, so revoking a jti affects only that tenant's tokens.
fn revocation_key(tenant: &str, jti: &str) -> Result<Key, AuthError> {
    if !valid_ident(jti) {
        return Err(AuthError::InvalidClaims(format!(
            "jti {jti:?} is not valid"
        )));
    }
    crate::store::validate_tenant(tenant).map_err(|e| AuthError::InvalidClaims(e.to_string()))?;
    Ok(Key::new(SYSTEM_TENANT, crate::keys::revoked(tenant, jti))?)
}

#[derive(Serialize, Deserialize)]
struct Revocation {
    tenant: String,
    exp: u64,
    revoked_at_ms: u64,
}

/// Records that the token `jti` (of `tenant`, expiring at `exp` seconds) is revoked. Revoking
/// twice is not an error.
pub async fn revoke(store: &dyn Store, jti: &str, tenant: &str, exp: u64) -> Result<(), AuthError> {
    let key = revocation_key(tenant, jti)?;
    let body = serde_json::to_vec(&Revocation {
        tenant: tenant.to_string(),
        exp,
        revoked_at_ms: now_ms(),
    })
    .expect("revocation serialises");
    // The revocation lives in the cluster's tenant; its event is staged in the same
    // transaction and moved into the tenant's log after it (`events::outbox`).
    let event = crate::events::Event::new("token.revoked", jti, now_ms())
        .data(serde_json::json!({ "jti": jti, "exp": exp }));
    let mut txn = Txn::new().put(key, body, Expect::Absent);
    crate::events::outbox::stage(&mut txn, tenant, jti, &event)?;
    match store.commit(txn).await {
        // Revoked already: a retry delivers the event its first call may have left staged.
        Ok(_) | Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    crate::events::outbox::deliver(store, tenant, jti, None).await?;
    Ok(())
}

/// A revocation of every token of one agent (`node_id`) issued before `not_before` (seconds
/// since the epoch): kept beside the revoked token ids, so that the same node memory and
/// change stream carry it. `exp` is when the last token it can refuse expires.
#[derive(Serialize, Deserialize)]
struct NodeRevocation {
    tenant: String,
    node_id: String,
    not_before: u64,
    exp: u64,
    revoked_at_ms: u64,
}

/// Longest lifetime of any token the API issues (one year): a node revocation refuses nothing
/// once that long has passed since it.
pub const MAX_TOKEN_TTL_SECS: u64 = 366 * 24 * 3600;

/// Ends the credentials of agent `node_id` of `tenant`: every token for that node issued
/// before the second after now is refused from now on (a credential issued later, by a new
/// enrollment, is not). Returns the `not_before` recorded. A later revocation moves it on.
pub async fn revoke_node(store: &dyn Store, tenant: &str, node_id: &str) -> Result<u64, AuthError> {
    if !valid_ident(node_id) {
        return Err(AuthError::InvalidClaims("node id is not valid".into()));
    }
    crate::store::validate_tenant(tenant).map_err(|e| AuthError::InvalidClaims(e.to_string()))?;
    let key = Key::new(SYSTEM_TENANT, crate::keys::revoked_node(tenant, node_id))?;
    let not_before = now_ms() / 1000 + 1;
    let body = serde_json::to_vec(&NodeRevocation {
        tenant: tenant.to_string(),
        node_id: node_id.to_string(),
        not_before,
        exp: not_before + MAX_TOKEN_TTL_SECS,
        revoked_at_ms: now_ms(),
    })
    .expect("node revocation serialises");
    let event = crate::events::Event::new("token.revoked", format!("node={node_id}"), now_ms())
        .data(serde_json::json!({ "node_id": node_id, "not_before": not_before }));
    let id = format!("node={node_id}.{not_before}");
    let mut txn = Txn::new().put(key, body, Expect::Any);
    crate::events::outbox::stage(&mut txn, tenant, &id, &event)?;
    match store.commit(txn).await {
        Ok(_) => {}
        // Revoked already within this second: the same `not_before`, so the same event.
        Err(StoreError::Conflict { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    crate::events::outbox::deliver(store, tenant, &id, None).await?;
    Ok(not_before)
}

/// The `not_before` of a stored node revocation record, `None` when it is not one.
pub fn node_revocation_not_before(record: &[u8]) -> Option<u64> {
    serde_json::from_slice::<NodeRevocation>(record)
        .ok()
        .map(|r| r.not_before)
}

/// Whether the node revocation `not_before` (if any) refuses `claims`.
pub fn refused_by_node(claims: &Claims, not_before: Option<u64>) -> bool {
    claims.node_id.is_some() && not_before.is_some_and(|nb| claims.iat < nb)
}

/// The `not_before` of the node revocation of `node_id` of `tenant`, read from the store.
pub async fn node_not_before(
    store: &dyn Store,
    tenant: &str,
    node_id: &str,
) -> Result<Option<u64>, AuthError> {
    let key = Key::new(SYSTEM_TENANT, crate::keys::revoked_node(tenant, node_id))?;
    Ok(store
        .get(&key)
        .await?
        .and_then(|v| node_revocation_not_before(&v.value)))
}

/// The expiry (seconds since the epoch) of the token a stored revocation record names, `None`
/// when the record is not readable as one.
pub fn revocation_expiry(record: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Revocation>(record)
        .ok()
        .map(|r| r.exp)
}

/// Whether the token `jti` of `tenant` has been revoked, read from the store. Request paths
/// ask a node's [`crate::revocations::RevocationCache`] first and read the store only when the
/// cache cannot be trusted.
pub async fn is_revoked(store: &dyn Store, tenant: &str, jti: &str) -> Result<bool, AuthError> {
    Ok(store.get(&revocation_key(tenant, jti)?).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_role_lists_the_names() {
        assert_eq!(
            "root".parse::<Role>(),
            Err("unknown role \"root\" (admin, operator, viewer, agent, enroll)".to_string())
        );
    }

    fn auth() -> Authenticator {
        Authenticator::new(vec![SigningKey::generate()], "iss-a", "aud-a")
    }

    #[test]
    fn issued_token_verifies_with_its_claims() {
        let a = auth();
        let (t, c) = a
            .issue("me", "acme", Role::Operator, Duration::from_secs(60), None)
            .unwrap();
        let v = a.verify(&t).unwrap();
        assert_eq!(v, c);
        assert_eq!(v.tenant, "acme");
        assert_eq!(v.role, Role::Operator);
    }

    #[test]
    fn a_remembered_token_is_checked_for_expiry_on_every_use() {
        let a = auth();
        let (t, c) = a
            .issue("me", "acme", Role::Operator, Duration::from_secs(60), None)
            .unwrap();
        assert_eq!(a.verify(&t).unwrap(), c);
        assert_eq!(a.verified.len(), 1, "a token that passed is remembered");
        // A clone has the same keys and shares what was verified.
        assert_eq!(a.clone().verify(&t).unwrap(), c);
        assert_eq!(a.verified.len(), 1);
        // A use is answered from the memo (marked here by its `iat`), with `iss` and `aud`,
        // which the memo does not keep, equal to the token's.
        a.verified.edit(&token_digest(&t), |r| r.iat = 1);
        let hit = a.verify(&t).unwrap();
        assert_eq!(hit.iat, 1);
        assert_eq!(
            (hit.iss.as_str(), hit.aud.as_str()),
            (c.iss.as_str(), c.aud.as_str())
        );
        assert_eq!(Claims { iat: c.iat, ..hit }, c);
        // The remembered claims say the token has expired: the next use is refused and forgets
        // it, and the use after that verifies the token in full (its own `exp` is still ahead).
        a.verified
            .edit(&token_digest(&t), |r| r.exp = now_ms() / 1000);
        assert!(matches!(a.verify(&t), Err(AuthError::Expired)));
        assert_eq!(a.verified.len(), 0);
        assert_eq!(a.verify(&t).unwrap(), c);
    }

    #[test]
    fn a_token_that_differs_in_any_byte_from_a_remembered_one_is_verified_in_full() {
        let a = auth();
        let (t, c) = a
            .issue("me", "acme", Role::Viewer, Duration::from_secs(60), None)
            .unwrap();
        a.verify(&t).unwrap();
        let mut bytes = t.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(bytes).unwrap();
        assert!(a.verify(&forged).is_err());
        // Claims raised to admin, with the remembered token's signature.
        let mut raised = c.clone();
        raised.role = Role::Admin;
        let sig = t.rsplit('.').next().unwrap();
        let hdr = t.split('.').next().unwrap();
        let body = B64URL.encode(serde_json::to_vec(&raised).unwrap());
        assert!(matches!(
            a.verify(&format!("{hdr}.{body}.{sig}")),
            Err(AuthError::BadSignature)
        ));
        // Refused tokens are not remembered; the one that passed still is, unchanged.
        assert_eq!(a.verified.len(), 1);
        assert_eq!(a.verify(&t).unwrap(), c);
    }

    /// A token for `sub`, issued and verified once.
    fn verified_once(a: &Authenticator, sub: &str) -> String {
        let (t, c) = a
            .issue(sub, "acme", Role::Viewer, Duration::from_secs(60), None)
            .unwrap();
        assert_eq!(a.verify(&t).unwrap(), c);
        t
    }

    #[test]
    fn the_verified_tokens_remembered_are_bounded() {
        // The policy with a small bound (a full-size run would issue 131,072 tokens).
        const MAX: usize = 64;
        let mut a = auth();
        a.verified = std::sync::Arc::new(Verified::holding(MAX));
        for i in 0..MAX * 4 {
            verified_once(&a, &format!("u{i}"));
            assert!(a.verified.len() <= MAX, "{} remembered", a.verified.len());
        }
        // Full, and still remembering (not emptied to make room).
        assert!(
            a.verified.len() >= MAX / 2,
            "{} remembered",
            a.verified.len()
        );
    }

    #[test]
    fn a_churn_of_tokens_seen_once_does_not_make_the_memo_forget_those_in_use() {
        // Tokens renewed and never presented again, or a burst of new ones: each is verified
        // once. The tokens in use, presented between them, stay remembered.
        const MAX: usize = 64;
        let mut a = auth();
        a.verified = std::sync::Arc::new(Verified::holding(MAX));
        let in_use: Vec<String> = (0..8)
            .map(|i| verified_once(&a, &format!("a{i}")))
            .collect();
        for i in 0..MAX * 8 {
            verified_once(&a, &format!("once{i}"));
            if i % 4 == 0 {
                for t in &in_use {
                    // (From the second round on: the first one may verify again those that
                    // the tokens issued after them pushed out before they were used twice.)
                    assert!(
                        i == 0 || a.verified.get(&token_digest(t), "", "").is_some(),
                        "a token in use was forgotten after {i} tokens seen once"
                    );
                    a.verify(t).unwrap();
                }
            }
        }
        for t in &in_use {
            // A memo hit is marked by its `iat`: a full verification would give the token's own.
            a.verified.edit(&token_digest(t), |r| r.iat = 1);
            assert_eq!(a.verify(t).unwrap().iat, 1, "a token in use was forgotten");
        }
    }

    #[test]
    fn rejects_other_key_audience_expiry_and_alg_none() {
        let a = auth();
        let (t, mut c) = a
            .issue("me", "acme", Role::Admin, Duration::from_secs(60), None)
            .unwrap();
        // Another key with the same kid: bad signature.
        let mut other = SigningKey::generate();
        other.kid = a.keys[0].0.kid.clone();
        let b = Authenticator::new(vec![other], "iss-a", "aud-a");
        assert!(matches!(b.verify(&t), Err(AuthError::BadSignature)));
        assert_eq!(peek_claims(&t).as_ref(), Some(&c));
        // Wrong audience.
        let c2 = Authenticator::new(vec![a.keys[0].0.clone()], "iss-a", "aud-b");
        assert!(matches!(c2.verify(&t), Err(AuthError::WrongAudience)));
        // Expired.
        c.exp = now_ms() / 1000 - 1;
        let expired = a.sign(&c).unwrap();
        assert!(matches!(a.verify(&expired), Err(AuthError::Expired)));
        // alg=none with the same claims and no signature.
        let hdr = B64URL.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let body = B64URL.encode(serde_json::to_vec(&c).unwrap());
        assert!(a.verify(&format!("{hdr}.{body}.")).is_err());
    }

    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;

    #[test]
    fn roles_are_enforced() {
        assert!(Role::Admin.allows(Permission::ManageTokens));
        assert!(!Role::Admin.allows(Permission::AgentProtocol));
        assert!(Role::Operator.allows(Permission::SubmitJobs));
        assert!(!Role::Operator.allows(Permission::ManageTokens));
        assert!(!Role::Viewer.allows(Permission::SubmitJobs));
        assert!(Role::Viewer.allows(Permission::ReadJobs));
        assert!(!Role::Agent.allows(Permission::ReadJobs));
    }

    #[test]
    fn agent_token_needs_node_id() {
        let a = auth();
        assert!(
            a.issue("x", "acme", Role::Agent, Duration::from_secs(60), None)
                .is_err()
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded_and_never_overwritten() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        let (k1, created) = SigningKey::load_or_create(&p).unwrap();
        assert!(created);
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (k2, created) = SigningKey::load_or_create(&p).unwrap();
        assert!(!created);
        assert_eq!(k1.kid, k2.kid);
        std::fs::write(&p, b"garbage").unwrap();
        assert!(matches!(
            SigningKey::load_or_create(&p),
            Err(AuthError::KeyFile { .. })
        ));
        assert_eq!(std::fs::read(&p).unwrap(), b"garbage");
    }

    #[test]
    fn subjects_are_identifiers_and_never_the_systems_own() {
        for ok in [
            "alice",
            "ci-bot.eu_1",
            "operator-1a2b3c4d",
            &"x".repeat(MAX_SUBJECT_LEN),
        ] {
            assert_eq!(validate_subject(ok), Ok(()), "{ok}");
        }
        let long = "x".repeat(MAX_SUBJECT_LEN + 1);
        for bad in [
            "",
            "bootstrap-admin",
            "Bootstrap-Admin",
            "reconciler",
            "_system",
            "bootstrap-admin\n2026-12-01T19:30:00Z  INFO fluxd: forged",
            "a b",
            "tab\there",
            "ünïcode",
            long.as_str(),
        ] {
            let e = validate_subject(bad).unwrap_err();
            assert!(e.contains("subject"), "{bad:?}: {e}");
            assert!(!e.contains('\n') && e.len() < 200, "{e}");
        }
    }

    #[test]
    fn a_token_with_a_subject_no_server_would_issue_is_refused() {
        let a = auth();
        let (_, mut c) = a
            .issue("me", "acme", Role::Operator, Duration::from_secs(60), None)
            .unwrap();
        c.sub = "me\nforged".into();
        assert!(matches!(
            a.verify(&a.sign(&c).unwrap()),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn rotation_the_active_key_signs_listed_keys_verify_removed_keys_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let old_p = dir.path().join("old.json");
        let new_p = dir.path().join("new.json");
        let (old_keys, created) = load_key_ring(std::slice::from_ref(&old_p)).unwrap();
        assert!(created);
        let before = Authenticator::new(old_keys.clone(), "iss-a", "aud-a");
        let (old_token, _) = before
            .issue("me", "acme", Role::Operator, Duration::from_secs(60), None)
            .unwrap();

        // Rotated: the new key first (created), the old one kept for verification.
        let (keys, created) = load_key_ring(&[new_p.clone(), old_p.clone()]).unwrap();
        assert!(created);
        assert_eq!(keys[1].kid, old_keys[0].kid);
        let during = Authenticator::new(keys.clone(), "iss-a", "aud-a");
        assert_ne!(during.active_kid(), old_keys[0].kid);
        assert_eq!(
            during.kids(),
            vec![keys[0].kid.as_str(), keys[1].kid.as_str()]
        );
        assert_eq!(during.verify(&old_token).unwrap().sub, "me");
        let (new_token, _) = during
            .issue("me", "acme", Role::Operator, Duration::from_secs(60), None)
            .unwrap();
        let hdr = jsonwebtoken::decode_header(&new_token).unwrap();
        assert_eq!(hdr.kid.as_deref(), Some(during.active_kid()));

        // The old key removed: its tokens are refused, the new key's still verify.
        let (keys, created) = load_key_ring(std::slice::from_ref(&new_p)).unwrap();
        assert!(!created);
        let after = Authenticator::new(keys, "iss-a", "aud-a");
        assert!(matches!(
            after.verify(&old_token),
            Err(AuthError::UnknownKey(k)) if k == old_keys[0].kid
        ));
        assert!(after.verify(&new_token).is_ok());

        // A retired key must exist (it is never made up), and a key may not be listed twice.
        let gone = dir.path().join("gone.json");
        assert!(matches!(
            load_key_ring(&[new_p.clone(), gone.clone()]),
            Err(AuthError::KeyFile { .. })
        ));
        assert!(!gone.exists());
        let copy = dir.path().join("copy.json");
        std::fs::copy(&new_p, &copy).unwrap();
        assert!(matches!(
            load_key_ring(&[new_p, copy]),
            Err(AuthError::KeyFile { message, .. }) if message.contains("listed twice")
        ));
    }

    #[test]
    fn a_revocation_record_gives_its_tokens_expiry() {
        let body = serde_json::to_vec(&Revocation {
            tenant: "acme".into(),
            exp: 1234,
            revoked_at_ms: 1,
        })
        .unwrap();
        assert_eq!(revocation_expiry(&body), Some(1234));
        assert_eq!(revocation_expiry(b"1"), None);
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(bearer("Bearer abc").unwrap(), "abc");
        assert_eq!(bearer("bearer abc").unwrap(), "abc");
        assert!(bearer("Basic abc").is_err());
        assert!(bearer("Bearer ").is_err());
        assert!(bearer("abc").is_err());
    }
}
