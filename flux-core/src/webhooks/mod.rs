//! Webhooks: a tenant's subscriptions that the leader delivers from the event log.
//!
//! The durable event log ([`crate::events`]) is the outbox: every event is written in the same
//! transaction as its change, so a webhook cannot miss one. Each webhook keeps a cursor (the
//! position delivered up to); the leader sends the next matching event, and once the receiver
//! answered 2xx, moves the cursor past it and writes the delivery record in one fenced
//! transaction. A leader killed after the change and before that transaction leaves its
//! successor to send the event again: delivery is at least once, and a re-delivery carries the
//! same delivery id (derived from the webhook's id and the event's position).
//!
//! Each request carries `X-Flux-Delivery` (the id), `X-Flux-Timestamp` (seconds since the
//! epoch), `X-Flux-Event` (the type) and `X-Flux-Signature: sha256=HEX`, the HMAC-SHA256 under
//! the webhook's secret of `id + "." + timestamp + "." + body`.
//!
//! Guarantees:
//! - In order per webhook (one request in flight per webhook, the next only after the cursor
//!   moved), hence in order per object.
//! - A failing receiver is retried with exponential backoff and jitter (each delay at least half
//!   its ceiling) up to the webhook's `max_attempts`, then the event is recorded `failed` and the
//!   webhook moves on: a dead receiver holds up only its own webhook, and for a bounded time.
//! - SSRF: `http://` is refused unless the webhook allows it; loopback, private, link-local,
//!   shared and unspecified addresses are refused unless the cluster allows private targets,
//!   when the webhook is created (IP literals) and on every delivery (the resolved addresses,
//!   so a name that later resolves inside is refused too); redirects are not followed.
//! - The secret is never returned after creation.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

pub mod driver;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::events::{self, EventView, Filter, Logged, Position};
use crate::model::{Millis, valid_ident};
use crate::selector::Selector;
use crate::store::{Epoch, Expect, Key, Range, Store, StoreError, Txn, Version};

/// Prefix of the webhook records.
pub const WEBHOOKS: &str = "webhooks/";
/// Prefix of the webhooks' cursors.
pub const CURSORS: &str = "webhook_cursors/";
/// Prefix of the webhooks' recent deliveries.
pub const DELIVERIES: &str = "webhook_deliveries/";
/// Delivery records kept per webhook (a ring).
pub const RECENT: u64 = 50;
/// Most webhooks per tenant.
pub const MAX_WEBHOOKS: usize = 100;
/// Default and largest `max_attempts`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 8;
pub const MAX_MAX_ATTEMPTS: u32 = 20;
/// Longest URL, secret and CA accepted.
const MAX_URL: usize = 2048;
const MAX_SECRET: usize = 512;
const MAX_CA: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    Invalid(String),
    #[error("no webhook {0:?}")]
    NotFound(String),
    #[error("a webhook {0:?} exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Events(#[from] events::EventError),
    #[error("corrupt webhook record {0}")]
    Corrupt(String),
}

pub type Result<T, E = WebhookError> = std::result::Result<T, E>;

/// `POST /v1/webhooks`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    pub name: String,
    pub url: String,
    /// Event types (`job.*` wildcards); empty: every type.
    #[serde(default)]
    pub events: Vec<String>,
    /// Only events about agents this selector matches.
    #[serde(default)]
    pub filter: Option<String>,
    /// The signing secret; generated (and returned once) when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// PEM CA certificates the receiver's certificate must chain to (instead of the system's).
    #[serde(default)]
    pub ca_pem: Option<String>,
    /// Accept an `http://` URL.
    #[serde(default)]
    pub allow_http: bool,
    #[serde(default)]
    pub max_attempts: Option<u32>,
}

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub name: String,
    /// Unique per creation: delivery ids derive from it.
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    pub secret: String,
    #[serde(default)]
    pub ca_pem: Option<String>,
    pub allow_http: bool,
    pub max_attempts: u32,
    /// Events after this position are delivered (the log's head at creation).
    pub start: String,
    pub created_at: Millis,
    pub created_by: String,
}

/// A webhook as shown (no secret).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WebhookView {
    pub name: String,
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    #[serde(default)]
    pub filter: Option<String>,
    pub has_ca: bool,
    pub allow_http: bool,
    pub max_attempts: u32,
    pub created_at: Millis,
    pub created_by: String,
    /// Events after this id are delivered (the log's head at creation).
    #[serde(default)]
    pub start: String,
    /// The event id delivered (or given up) up to.
    pub delivered_to: String,
    /// Attempts made on the next event so far, and the last error.
    pub attempts: u32,
    #[serde(default)]
    pub last_error: Option<String>,
    /// Recent deliveries, newest first (only in `get`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deliveries: Vec<Delivery>,
}

/// Where a webhook stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last event id delivered, given up or skipped (not matching).
    pub after: String,
    /// Attempts on the event after it.
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Deliveries recorded so far (the ring's next slot).
    pub seq: u64,
    /// Events the log's collection took before they were delivered, not yet told to the
    /// receiver (a `webhook.dropped` notice is sent before the next event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Dropped>,
}

/// A run of events collected from the log before a webhook delivered them: the first and the
/// last event id, and how many of them the webhook takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    pub from: String,
    pub to: String,
    pub count: u64,
}

/// One delivery's record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub delivery_id: String,
    pub event_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub response_code: Option<u16>,
    pub error: Option<String>,
    pub at: Millis,
    /// `dropped`: the first event id of the run collected undelivered (`event_id` is the
    /// last), and how many events of it the webhook takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// The body of a delivery.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Payload {
    pub delivery_id: String,
    pub webhook: String,
    pub tenant: String,
    pub event: EventView,
}

fn webhook_key(tenant: &str, name: &str) -> Result<Key> {
    Ok(Key::new(tenant, format!("{WEBHOOKS}{name}"))?)
}

fn cursor_key(tenant: &str, name: &str) -> Result<Key> {
    Ok(Key::new(tenant, format!("{CURSORS}{name}"))?)
}

fn delivery_key(tenant: &str, name: &str, slot: u64) -> Result<Key> {
    Ok(Key::new(tenant, format!("{DELIVERIES}{name}/{slot:02}"))?)
}

/// Whether a webhook may reach `ip` without `--webhook-allow-private`: a public unicast address.
/// IPv6 forms that carry an IPv4 address (mapped, compatible, translated, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by that address; prefixes whose IPv4 cannot be read off (local
/// NAT64 `64:ff9b:1::/48`, Teredo `2001::/32`, discard `100::/64`) are refused.
pub fn public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || o[0] == 0
                // Shared address space (100.64.0.0/10).
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                // IETF protocol assignments (192.0.0.0/24).
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                // Benchmarking (198.18.0.0/15).
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                // Reserved (240.0.0.0/4).
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let low_v4 = || {
                IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            };
            // Mapped (::ffff:a.b.c.d) and compatible (::a.b.c.d, but not :: or ::1).
            if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && (s[6] != 0 || s[7] > 1))) {
                return public_address(low_v4());
            }
            // Translated (::ffff:0:a.b.c.d) and well-known NAT64 (64:ff9b::/96).
            if (s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0)
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0])
            {
                return public_address(low_v4());
            }
            // 6to4 (2002:AABB:CCDD::/48) carries a.b.c.d in its second and third segments.
            if s[0] == 0x2002 {
                return public_address(IpAddr::V4(std::net::Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                )));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                // Unique local fc00::/7 and link-local fe80::/10.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                // Local-use NAT64 (64:ff9b:1::/48).
                || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1)
                // Teredo (2001::/32) and discard-only (100::/64).
                || (s[0] == 0x2001 && s[1] == 0)
                || s[..4] == [0x100, 0, 0, 0])
        }
    }
}

/// Checks a webhook's URL: `https` (or `http` when allowed), a host, and, when the host is an
/// address, one a webhook may reach.
pub fn check_url(url: &str, allow_http: bool, allow_private: bool) -> Result<reqwest::Url> {
    if url.len() > MAX_URL {
        return Err(WebhookError::Invalid(format!(
            "url: at most {MAX_URL} characters"
        )));
    }
    let u = reqwest::Url::parse(url)
        .map_err(|e| WebhookError::Invalid(format!("url: not a URL ({e})")))?;
    match u.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => {
            return Err(WebhookError::Invalid(
                "url: plain http:// is refused (give allow_http to accept it)".into(),
            ));
        }
        other => {
            return Err(WebhookError::Invalid(format!(
                "url: scheme {:?} is not https",
                other.chars().take(20).collect::<String>()
            )));
        }
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(WebhookError::Invalid(
            "url: credentials in the URL are refused (sign with the secret instead)".into(),
        ));
    }
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| WebhookError::Invalid("url: no host".into()))?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let ip = match bare.parse::<IpAddr>() {
        Ok(a) => Some(a),
        Err(_) if host.eq_ignore_ascii_case("localhost") || host.ends_with(".localhost") => {
            Some(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST))
        }
        Err(_) => None,
    };
    if let Some(ip) = ip
        && !allow_private
        && !public_address(ip)
    {
        return Err(WebhookError::Invalid(format!(
            "url: {ip} is a loopback, private or link-local address; the cluster does not allow \
             webhooks to reach those (fluxd --webhook-allow-private)"
        )));
    }
    Ok(u)
}

/// Validates a creation request into the webhook to store (`start` and identity filled in).
pub fn validate(
    req: &CreateWebhook,
    allow_private: bool,
    by: &str,
    now: Millis,
    start: Position,
) -> Result<(Webhook, Option<String>)> {
    if !valid_ident(&req.name) || req.name.len() > 63 {
        return Err(WebhookError::Invalid(
            "name: 1 to 63 characters of a-z, 0-9, '-', '_' or '.'".into(),
        ));
    }
    check_url(&req.url, req.allow_http, allow_private)?;
    if req.events.len() > events::TYPES.len() * 2 {
        return Err(WebhookError::Invalid("events: too many types".into()));
    }
    Filter::default().with_types(&req.events.join(","))?;
    if let Some(f) = &req.filter {
        if f.len() > 1024 {
            return Err(WebhookError::Invalid(
                "filter: at most 1024 characters".into(),
            ));
        }
        Selector::parse(f).map_err(|e| WebhookError::Invalid(format!("filter: {e}")))?;
    }
    let (secret, generated) = match &req.secret {
        Some(s) if s.len() < 16 || s.len() > MAX_SECRET => {
            return Err(WebhookError::Invalid(format!(
                "secret: 16 to {MAX_SECRET} characters"
            )));
        }
        Some(s) => (s.clone(), None),
        None => {
            let s = hex::encode(rand::random::<[u8; 32]>());
            (s.clone(), Some(s))
        }
    };
    if let Some(ca) = &req.ca_pem {
        if ca.len() > MAX_CA {
            return Err(WebhookError::Invalid(format!(
                "ca_pem: at most {MAX_CA} bytes"
            )));
        }
        match reqwest::Certificate::from_pem_bundle(ca.as_bytes()) {
            Ok(c) if !c.is_empty() => {}
            _ => {
                return Err(WebhookError::Invalid(
                    "ca_pem: not a PEM certificate bundle".into(),
                ));
            }
        }
    }
    let max_attempts = req.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS);
    if !(1..=MAX_MAX_ATTEMPTS).contains(&max_attempts) {
        return Err(WebhookError::Invalid(format!(
            "max_attempts: between 1 and {MAX_MAX_ATTEMPTS}"
        )));
    }
    Ok((
        Webhook {
            name: req.name.clone(),
            id: uuid::Uuid::new_v4().simple().to_string(),
            url: req.url.clone(),
            events: req.events.clone(),
            filter: req.filter.clone(),
            secret,
            ca_pem: req.ca_pem.clone(),
            allow_http: req.allow_http,
            max_attempts,
            start: start.id(),
            created_at: now,
            created_by: by.to_string(),
        },
        generated,
    ))
}

/// `sha256=HEX` of HMAC-SHA256(secret, id + "." + ts + "." + body).
pub fn signature(secret: &str, id: &str, ts: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The delivery id of `event` for `webhook`: the same on every attempt and every leader.
pub fn delivery_id(webhook: &Webhook, event: &Position) -> String {
    format!("{}-{}", &webhook.id[..webhook.id.len().min(12)], event.id())
}

/// The delay before attempt `attempt + 1`: exponential from `base` up to `cap`, each delay
/// between half its ceiling and the ceiling (jitter that never collapses to zero).
pub fn retry_delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let half = ceiling / 2;
    let ms = half.as_millis() as u64;
    half + Duration::from_millis(if ms == 0 {
        0
    } else {
        rand::random_range(0..=ms)
    })
}

impl Webhook {
    pub fn filter(&self) -> Result<Filter> {
        let mut f = Filter::default().with_types(&self.events.join(","))?;
        if let Some(s) = &self.filter {
            f.selector = Some(
                Selector::parse(s).map_err(|e| WebhookError::Invalid(format!("filter: {e}")))?,
            );
        }
        Ok(f)
    }

    fn view(&self, cursor: &Cursor, deliveries: Vec<Delivery>) -> WebhookView {
        WebhookView {
            name: self.name.clone(),
            id: self.id.clone(),
            url: self.url.clone(),
            events: self.events.clone(),
            filter: self.filter.clone(),
            has_ca: self.ca_pem.is_some(),
            allow_http: self.allow_http,
            max_attempts: self.max_attempts,
            created_at: self.created_at,
            created_by: self.created_by.clone(),
            start: self.start.clone(),
            delivered_to: if cursor.after.is_empty() {
                self.start.clone()
            } else {
                cursor.after.clone()
            },
            attempts: cursor.attempts,
            last_error: cursor.last_error.clone(),
            deliveries,
        }
    }
}

async fn load<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    k: &Key,
) -> Result<Option<(T, Version)>> {
    match store.get(k).await? {
        None => Ok(None),
        Some(v) => serde_json::from_slice(&v.value)
            .map(|t| Some((t, v.version)))
            .map_err(|_| WebhookError::Corrupt(k.to_string())),
    }
}

/// Creates a webhook (its cursor starts at the log's head).
pub async fn create(
    store: &dyn Store,
    tenant: &str,
    req: &CreateWebhook,
    allow_private: bool,
    by: &str,
    now: Millis,
) -> Result<(WebhookView, Option<String>)> {
    let head = events::head(store, tenant).await?;
    let (hook, secret) = validate(req, allow_private, by, now, head)?;
    let mut last = None;
    for _ in 0..CAS_RETRIES {
        if load::<Webhook>(store, &webhook_key(tenant, &hook.name)?)
            .await?
            .is_some()
        {
            return Err(WebhookError::Exists(hook.name));
        }
        // The count is checked and raised in the creating transaction, under CAS: of two
        // creations racing at the limit, one commits and the other reads again.
        let (count, cv) = count(store, tenant).await?;
        if count >= MAX_WEBHOOKS as u64 {
            return Err(WebhookError::Invalid(format!(
                "name: a tenant has at most {MAX_WEBHOOKS} webhooks"
            )));
        }
        let txn = Txn::new()
            .put(
                webhook_key(tenant, &hook.name)?,
                serde_json::to_vec(&hook).expect("webhooks serialize"),
                Expect::Absent,
            )
            .put(
                cursor_key(tenant, &hook.name)?,
                serde_json::to_vec(&Cursor {
                    after: hook.start.clone(),
                    ..Cursor::default()
                })
                .expect("cursors serialize"),
                Expect::Any,
            )
            .put(
                Key::new(tenant, COUNT.to_string())?,
                (count + 1).to_string().into_bytes(),
                cv.map_or(Expect::Absent, Expect::Version),
            );
        match store.commit(txn).await {
            Ok(_) => return Ok((hook.view(&Cursor::default(), vec![]), secret)),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(
        || WebhookError::Invalid("name: webhooks are changing too fast; retry".into()),
        WebhookError::Store,
    ))
}

/// The record counting a tenant's webhooks (kept by create and delete, under CAS).
pub const COUNT: &str = "webhook_count";
/// Attempts of a create or delete that meets a concurrent change.
const CAS_RETRIES: usize = 16;

/// The tenant's webhook count and its record's version; without a record (webhooks made
/// before it existed), the count of the stored webhooks.
async fn count(store: &dyn Store, tenant: &str) -> Result<(u64, Option<Version>)> {
    let k = Key::new(tenant, COUNT.to_string())?;
    match store.get(&k).await? {
        Some(v) => std::str::from_utf8(&v.value)
            .ok()
            .and_then(|t| t.parse().ok())
            .map(|n| (n, Some(v.version)))
            .ok_or_else(|| WebhookError::Corrupt(k.to_string())),
        None => Ok((all_under(store, tenant, WEBHOOKS).await?.len() as u64, None)),
    }
}

/// The stored webhook `name`.
pub async fn load_webhook(store: &dyn Store, tenant: &str, name: &str) -> Result<Webhook> {
    if !valid_ident(name) {
        return Err(WebhookError::NotFound(name.chars().take(63).collect()));
    }
    load::<Webhook>(store, &webhook_key(tenant, name)?)
        .await?
        .map(|(w, _)| w)
        .ok_or_else(|| WebhookError::NotFound(name.to_string()))
}

/// Every webhook of the tenant (at most [`MAX_WEBHOOKS`]), with where it stands.
pub async fn list(store: &dyn Store, tenant: &str) -> Result<Vec<WebhookView>> {
    let hooks = store
        .list_range(tenant, &Range::first(WEBHOOKS, MAX_WEBHOOKS))
        .await?;
    let mut out = Vec::with_capacity(hooks.len());
    for e in hooks {
        let w: Webhook = serde_json::from_slice(&e.value)
            .map_err(|_| WebhookError::Corrupt(e.key.to_string()))?;
        let c = load::<Cursor>(store, &cursor_key(tenant, &w.name)?)
            .await?
            .map(|(c, _)| c)
            .unwrap_or_default();
        out.push(w.view(&c, vec![]));
    }
    Ok(out)
}

/// One webhook with its recent deliveries, newest first.
pub async fn get(store: &dyn Store, tenant: &str, name: &str) -> Result<WebhookView> {
    let w = load_webhook(store, tenant, name).await?;
    let c = load::<Cursor>(store, &cursor_key(tenant, name)?)
        .await?
        .map(|(c, _)| c)
        .unwrap_or_default();
    let mut ds: Vec<Delivery> = store
        .list_range(
            tenant,
            &Range::first(format!("{DELIVERIES}{name}/"), RECENT as usize),
        )
        .await?
        .iter()
        .filter_map(|e| serde_json::from_slice(&e.value).ok())
        .collect();
    ds.sort_by(|a: &Delivery, b| {
        let p = |d: &Delivery| Position::parse(&d.event_id).unwrap_or_default();
        p(b).cmp(&p(a))
    });
    Ok(w.view(&c, ds))
}

/// Deletes a webhook, its cursor and its delivery records, and lowers the count, in one
/// transaction.
pub async fn delete(store: &dyn Store, tenant: &str, name: &str) -> Result<()> {
    let mut last = None;
    for _ in 0..CAS_RETRIES {
        let Some((_, hv)) = load::<Webhook>(store, &webhook_key(tenant, name)?).await? else {
            return Err(WebhookError::NotFound(name.chars().take(63).collect()));
        };
        let (count, cv) = count(store, tenant).await?;
        let mut txn = Txn::new()
            .delete(webhook_key(tenant, name)?, Expect::Version(hv))
            .delete(cursor_key(tenant, name)?, Expect::Any)
            .put(
                Key::new(tenant, COUNT.to_string())?,
                count.saturating_sub(1).to_string().into_bytes(),
                cv.map_or(Expect::Absent, Expect::Version),
            );
        for e in store
            .list_range(
                tenant,
                &Range::first(format!("{DELIVERIES}{name}/"), RECENT as usize + 1),
            )
            .await?
        {
            txn = txn.delete(e.key, Expect::Any);
        }
        match store.commit(txn).await {
            Ok(_) => return Ok(()),
            Err(e @ StoreError::Conflict { .. }) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(
        || WebhookError::Invalid("name: webhooks are changing too fast; retry".into()),
        WebhookError::Store,
    ))
}

/// The oldest position some webhook of the tenant still has to deliver after (retention keeps
/// every event after it), `None` without webhooks.
pub async fn oldest_pending(store: &dyn Store, tenant: &str) -> Result<Option<Position>> {
    let mut min: Option<Position> = None;
    for e in all_under(store, tenant, CURSORS).await? {
        let c: Cursor = serde_json::from_slice(&e.value)
            .map_err(|_| WebhookError::Corrupt(e.key.to_string()))?;
        let p = Position::parse(&c.after).unwrap_or_default();
        min = Some(min.map_or(p, |m| m.min(p)));
    }
    Ok(min)
}

/// Resolves names for deliveries, dropping the addresses a webhook may not reach (checked on
/// every connection, so a name re-pointed inside the network is refused).
#[derive(Clone, Debug)]
struct GuardedResolver {
    allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow || public_address(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{host} resolves to no address a webhook may reach (loopback, private and \
                     link-local addresses need fluxd --webhook-allow-private)"
                )
                .into());
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How deliveries are made (fluxd flags).
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    pub allow_private: bool,
    /// Each request's time limit.
    pub timeout: Duration,
    /// First retry delay and the longest.
    pub retry_base: Duration,
    pub retry_cap: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            allow_private: false,
            timeout: Duration::from_secs(10),
            retry_base: Duration::from_millis(500),
            retry_cap: Duration::from_secs(60),
        }
    }
}

/// The client of one webhook.
pub fn client_for(hook: &Webhook, cfg: &DeliveryConfig) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5).min(cfg.timeout))
        .timeout(cfg.timeout)
        .redirect(reqwest::redirect::Policy::none())
        // A proxy from the environment would resolve the receiver's name itself, past the
        // guarded resolver below.
        .no_proxy()
        .https_only(!hook.allow_http)
        .dns_resolver(Arc::new(GuardedResolver {
            allow_private: cfg.allow_private,
        }))
        .user_agent(concat!("fluxforge-webhooks/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = &hook.ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(ca.as_bytes())
            .map_err(|e| WebhookError::Invalid(format!("ca_pem: {e}")))?;
        b = b.tls_certs_only(certs);
    }
    b.build()
        .map_err(|e| WebhookError::Invalid(format!("client: {e}")))
}

/// What one request to a receiver gave.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    pub ok: bool,
    pub code: Option<u16>,
    pub error: Option<String>,
}

/// Sends one payload, signed; never fails (the outcome says what happened).
pub async fn send(
    client: &reqwest::Client,
    hook: &Webhook,
    cfg: &DeliveryConfig,
    payload: &Payload,
) -> Sent {
    // IP literals do not pass through the resolver: checked here, on every delivery.
    if let Err(e) = check_url(&hook.url, hook.allow_http, cfg.allow_private) {
        return Sent {
            ok: false,
            code: None,
            error: Some(e.to_string()),
        };
    }
    let body = serde_json::to_vec(payload).expect("payloads serialize");
    let ts = crate::model::now_ms() / 1000;
    let sig = signature(&hook.secret, &payload.delivery_id, ts, &body);
    let r = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header("x-flux-delivery", &payload.delivery_id)
        .header("x-flux-timestamp", ts.to_string())
        .header("x-flux-event", &payload.event.event.kind)
        .header("x-flux-signature", sig)
        .body(body)
        .send()
        .await;
    match r {
        Ok(resp) => {
            let code = resp.status().as_u16();
            Sent {
                ok: resp.status().is_success(),
                code: Some(code),
                error: (!resp.status().is_success()).then(|| format!("receiver answered {code}")),
            }
        }
        Err(e) => Sent {
            ok: false,
            code: None,
            error: Some(crate::client::error_chain(&e)),
        },
    }
}

/// What [`deliver_next`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing to deliver now.
    Idle,
    /// An event was delivered (or the cursor moved past events that do not match).
    Moved,
    /// The receiver failed; try again after this delay.
    Retry(Duration),
    /// The event was given up after its last attempt.
    GaveUp,
    /// The webhook no longer exists.
    Gone,
}

/// Pure: of a page of events after the cursor, how far the cursor moves over events the filter
/// does not take, and the first one it takes.
pub fn next_to_send<'a>(
    page: &'a [Logged],
    filter: &Filter,
) -> (Option<Position>, Option<&'a Logged>) {
    let mut skipped = None;
    for l in page {
        if filter.matches(&l.event) {
            return (skipped, Some(l));
        }
        skipped = Some(l.position);
    }
    (skipped, None)
}

/// One delivery step of webhook `name` under `epoch`: reads its cursor, sends the next matching
/// event and, on a 2xx, moves the cursor and records the delivery in one fenced transaction.
/// `client` is the webhook's client, rebuilt when its record changed.
pub async fn deliver_next(
    store: &dyn Store,
    tenant: &str,
    name: &str,
    epoch: Epoch,
    cfg: &DeliveryConfig,
    client: &mut Option<(String, reqwest::Client)>,
    sent_counter: &(dyn Fn(&str) + Send + Sync),
) -> Result<Step> {
    let Some((hook, hv)) = load::<Webhook>(store, &webhook_key(tenant, name)?).await? else {
        return Ok(Step::Gone);
    };
    let ck = cursor_key(tenant, name)?;
    let (cur, cv) = load_cursor(store, &ck, &hook).await?;
    if cur.dropped.is_some() {
        return notify_dropped(store, tenant, epoch, cfg, client, sent_counter, (&hook, hv)).await;
    }
    let page = read_after(store, tenant, &cur.after).await?;
    let filter = hook.filter()?;
    let (skipped, next) = next_to_send(&page, &filter);
    let commit = CursorCommit {
        ck,
        tenant,
        name,
        epoch,
        hv,
        expect: cv.map_or(Expect::Absent, Expect::Version),
    };
    let Some(l) = next else {
        return skip_unmatched(store, &commit, skipped, cur.seq).await;
    };
    let http = current_client(&hook, cfg, client)?;
    let delivery_id = delivery_id(&hook, &l.position);
    let payload = Payload {
        delivery_id: delivery_id.clone(),
        webhook: hook.name.clone(),
        tenant: tenant.to_string(),
        event: l.view(),
    };
    let sent = send(http, &hook, cfg, &payload).await;
    let attempt = Attempt {
        cur: &cur,
        skipped,
        event: l,
        delivery_id,
        sent,
        attempts: cur.attempts + 1,
    };
    if attempt.sent.ok || attempt.attempts >= hook.max_attempts {
        return attempt.finish(store, &commit, sent_counter).await;
    }
    attempt.retry(store, &commit, cfg, sent_counter).await
}

/// The webhook's cursor at `ck` and its version, or a new one at the webhook's start.
async fn load_cursor(
    store: &dyn Store,
    ck: &Key,
    hook: &Webhook,
) -> Result<(Cursor, Option<Version>)> {
    Ok(match load::<Cursor>(store, ck).await? {
        Some((c, v)) => (c, Some(v)),
        None => (
            Cursor {
                after: hook.start.clone(),
                ..Cursor::default()
            },
            None,
        ),
    })
}

/// A page of the tenant's events after the cursor's position `after`.
async fn read_after(store: &dyn Store, tenant: &str, after: &str) -> Result<Vec<Logged>> {
    let after = Position::parse(after).unwrap_or_default();
    Ok(match events::read(store, tenant, after, 64).await {
        Ok(p) => p,
        // Collected past the cursor (only without retention's guard, e.g. after a restore):
        // resume at the oldest kept.
        Err(events::EventError::Gone { floor, .. }) => {
            events::read(
                store,
                tenant,
                Position {
                    revision: floor,
                    index: None,
                },
                64,
            )
            .await?
        }
        Err(e) => return Err(e.into()),
    })
}

/// What a delivery step's cursor write is conditional on: the cursor and webhook as read.
struct CursorCommit<'a> {
    ck: Key,
    tenant: &'a str,
    name: &'a str,
    epoch: Epoch,
    hv: Version,
    expect: Expect,
}

impl CursorCommit<'_> {
    /// The fenced transaction writing cursor `c` (and the delivery record `extra` at its slot).
    fn txn(&self, c: Cursor, extra: Option<(u64, Delivery)>) -> Txn {
        let mut txn = Txn::new().fenced(self.epoch).put(
            self.ck.clone(),
            serde_json::to_vec(&c).expect("cursors serialize"),
            self.expect,
        );
        // The cursor moves only while the webhook is the one read.
        txn = txn.check(
            webhook_key(self.tenant, self.name).expect("checked above"),
            Expect::Version(self.hv),
        );
        if let Some((slot, d)) = extra {
            txn = txn.put(
                delivery_key(self.tenant, self.name, slot).expect("valid"),
                serde_json::to_vec(&d).expect("deliveries serialize"),
                Expect::Any,
            );
        }
        txn
    }
}

/// No matching event in the page: moves the cursor past the events it skipped, if any.
async fn skip_unmatched(
    store: &dyn Store,
    commit: &CursorCommit<'_>,
    skipped: Option<Position>,
    seq: u64,
) -> Result<Step> {
    match skipped {
        None => Ok(Step::Idle),
        Some(p) => {
            let c = Cursor {
                after: p.id(),
                attempts: 0,
                last_error: None,
                seq,
                dropped: None,
            };
            ignore_conflict(store.commit(commit.txn(c, None)).await)
        }
    }
}

/// One send of an event to the webhook's receiver, with what settling it needs.
struct Attempt<'a> {
    cur: &'a Cursor,
    skipped: Option<Position>,
    event: &'a Logged,
    delivery_id: String,
    sent: Sent,
    attempts: u32,
}

impl Attempt<'_> {
    /// The delivery record of this attempt, with `status`.
    fn record(&self, status: &str) -> Delivery {
        Delivery {
            delivery_id: self.delivery_id.clone(),
            event_id: self.event.position.id(),
            kind: self.event.event.kind.clone(),
            status: status.to_string(),
            attempts: self.attempts,
            response_code: self.sent.code,
            error: self.sent.error.clone(),
            at: crate::model::now_ms(),
            from_event: None,
            count: None,
        }
    }

    /// Delivered, or given up: moves the cursor past the event and records the delivery.
    async fn finish(
        &self,
        store: &dyn Store,
        commit: &CursorCommit<'_>,
        sent_counter: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Step> {
        let status = if self.sent.ok { "delivered" } else { "failed" };
        let c = Cursor {
            after: self.event.position.id(),
            attempts: 0,
            last_error: None,
            seq: self.cur.seq + 1,
            dropped: None,
        };
        let step = ignore_conflict(
            store
                .commit(commit.txn(c, Some((self.cur.seq % RECENT, self.record(status)))))
                .await,
        )?;
        sent_counter(status);
        Ok(if self.sent.ok || step == Step::Idle {
            step
        } else {
            Step::GaveUp
        })
    }

    /// The receiver failed: keeps the cursor on the event, the attempt counted, and waits.
    async fn retry(
        &self,
        store: &dyn Store,
        commit: &CursorCommit<'_>,
        cfg: &DeliveryConfig,
        sent_counter: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Step> {
        sent_counter("retried");
        let c = Cursor {
            after: self.skipped.map_or(self.cur.after.clone(), |p| p.id()),
            attempts: self.attempts,
            last_error: self.sent.error.clone(),
            seq: self.cur.seq,
            dropped: None,
        };
        match store.commit(commit.txn(c, None)).await {
            Ok(_) | Err(StoreError::Conflict { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Step::Retry(retry_delay(
            self.attempts - 1,
            cfg.retry_base,
            cfg.retry_cap,
        )))
    }
}

/// The webhook's client, rebuilt when its record changed.
fn current_client<'c>(
    hook: &Webhook,
    cfg: &DeliveryConfig,
    client: &'c mut Option<(String, reqwest::Client)>,
) -> Result<&'c reqwest::Client> {
    let id = format!(
        "{}{}{}",
        hook.id,
        hook.url,
        hook.ca_pem.as_deref().unwrap_or("")
    );
    if client.as_ref().is_none_or(|(have, _)| *have != id) {
        *client = Some((id, client_for(hook, cfg)?));
    }
    Ok(&client.as_ref().expect("set above").1)
}

/// The body of the `webhook.dropped` notice of `d` for `hook`.
pub fn dropped_payload(hook: &Webhook, tenant: &str, d: &Dropped) -> Payload {
    let at = Position::parse(&d.to).unwrap_or_default();
    let mut event = events::Event::new("job.submitted", hook.name.clone(), crate::model::now_ms());
    event.kind = "webhook.dropped".into();
    event.data = serde_json::json!({ "from": d.from, "to": d.to, "count": d.count });
    Payload {
        delivery_id: format!("{}-dropped-{}", &hook.id[..hook.id.len().min(12)], d.to),
        webhook: hook.name.clone(),
        tenant: tenant.to_string(),
        // Its own id, not that of an event: a receiver that keys on event ids must not take
        // the notice for the last event lost (which it may have received already).
        event: EventView {
            id: format!("dropped-{}", at.id()),
            revision: at.revision,
            event,
        },
    }
}

/// Sends the webhook's pending `webhook.dropped` notice (retried like an event, given up
/// after `max_attempts`), then clears it from the cursor under CAS.
async fn notify_dropped(
    store: &dyn Store,
    tenant: &str,
    epoch: Epoch,
    cfg: &DeliveryConfig,
    client: &mut Option<(String, reqwest::Client)>,
    sent_counter: &(dyn Fn(&str) + Send + Sync),
    (hook, hv): (&Webhook, Version),
) -> Result<Step> {
    let ck = cursor_key(tenant, &hook.name)?;
    let Some((cur, cv)) = load::<Cursor>(store, &ck).await? else {
        return Ok(Step::Idle);
    };
    let Some(d) = cur.dropped.clone() else {
        return Ok(Step::Idle);
    };
    let http = current_client(hook, cfg, client)?;
    let sent = send(http, hook, cfg, &dropped_payload(hook, tenant, &d)).await;
    let attempts = cur.attempts + 1;
    let done = sent.ok || attempts >= hook.max_attempts;
    let next = Cursor {
        attempts: if done { 0 } else { attempts },
        last_error: if done { None } else { sent.error.clone() },
        dropped: if done { None } else { Some(d) },
        ..cur
    };
    let txn = Txn::new()
        .fenced(epoch)
        .put(
            ck,
            serde_json::to_vec(&next).expect("cursors serialize"),
            Expect::Version(cv),
        )
        .check(webhook_key(tenant, &hook.name)?, Expect::Version(hv));
    let step = ignore_conflict(store.commit(txn).await)?;
    sent_counter(if sent.ok {
        "delivered"
    } else if done {
        "failed"
    } else {
        "retried"
    });
    Ok(if done || step == Step::Idle {
        step
    } else {
        Step::Retry(retry_delay(attempts - 1, cfg.retry_base, cfg.retry_cap))
    })
}

/// For the log's collection: adds to `txn` (its fenced transaction deleting `deleted`), for
/// every webhook whose cursor sits before some of `deleted` it takes, a `dropped` delivery
/// record (from, to, count) and its cursor moved past them with the notice to send, the cursor
/// under CAS (a delivery racing it makes the collection try again).
pub async fn record_dropped(
    store: &dyn Store,
    tenant: &str,
    deleted: &[Logged],
    txn: &mut Txn,
    now: Millis,
) -> Result<()> {
    let Some(last) = deleted.last() else {
        return Ok(());
    };
    for e in all_under(store, tenant, CURSORS).await? {
        let Some(name) = e.key.path().strip_prefix(CURSORS) else {
            continue;
        };
        let cur: Cursor = serde_json::from_slice(&e.value)
            .map_err(|_| WebhookError::Corrupt(e.key.to_string()))?;
        let after = Position::parse(&cur.after).unwrap_or_default();
        if after >= last.position {
            continue;
        }
        let Some((hook, _)) = load::<Webhook>(store, &webhook_key(tenant, name)?).await? else {
            continue;
        };
        let filter = hook.filter()?;
        let lost: Vec<&Logged> = deleted
            .iter()
            .filter(|l| l.position > after && filter.matches(&l.event))
            .collect();
        let (Some(first), Some(end)) = (lost.first(), lost.last()) else {
            continue;
        };
        let run = match &cur.dropped {
            Some(d) => Dropped {
                from: d.from.clone(),
                to: end.position.id(),
                count: d.count + lost.len() as u64,
            },
            None => Dropped {
                from: first.position.id(),
                to: end.position.id(),
                count: lost.len() as u64,
            },
        };
        let record = Delivery {
            delivery_id: format!(
                "{}-dropped-{}",
                &hook.id[..hook.id.len().min(12)],
                end.position.id()
            ),
            event_id: end.position.id(),
            kind: "webhook.dropped".into(),
            status: "dropped".into(),
            attempts: 0,
            response_code: None,
            error: Some(format!(
                "{} events from {} to {} were collected from the log before delivery",
                lost.len(),
                first.position.id(),
                end.position.id()
            )),
            at: now,
            from_event: Some(first.position.id()),
            count: Some(lost.len() as u64),
        };
        let next = Cursor {
            // Past everything that went, taken or not.
            after: last.position.id(),
            attempts: 0,
            last_error: None,
            seq: cur.seq + 1,
            dropped: Some(run),
        };
        txn.ops.push(crate::store::Op::Put {
            key: e.key.clone(),
            value: serde_json::to_vec(&next).expect("cursors serialize"),
            expect: Expect::Version(e.version),
        });
        txn.ops.push(crate::store::Op::Put {
            key: delivery_key(tenant, name, cur.seq % RECENT)?,
            value: serde_json::to_vec(&record).expect("deliveries serialize"),
            expect: Expect::Any,
        });
    }
    Ok(())
}

fn ignore_conflict(r: std::result::Result<Version, StoreError>) -> Result<Step> {
    match r {
        Ok(_) => Ok(Step::Moved),
        // The webhook was deleted or re-created meanwhile: read again.
        Err(StoreError::Conflict { .. }) => Ok(Step::Idle),
        Err(e) => Err(e.into()),
    }
}

/// A test delivery (`POST /v1/webhooks/{name}/test`), sent at once from the calling node.
pub async fn test(
    store: &dyn Store,
    tenant: &str,
    name: &str,
    cfg: &DeliveryConfig,
) -> Result<Sent> {
    let hook = load_webhook(store, tenant, name).await?;
    let client = client_for(&hook, cfg)?;
    let mut event = events::Event::new("job.submitted", "test", crate::model::now_ms());
    event.kind = "webhook.test".into();
    event.data = serde_json::json!({ "test": true });
    let payload = Payload {
        delivery_id: format!("test-{}", uuid::Uuid::new_v4().simple()),
        webhook: hook.name.clone(),
        tenant: tenant.to_string(),
        event: EventView {
            id: "0.0".into(),
            revision: 0,
            event,
        },
    };
    Ok(send(&client, &hook, cfg, &payload).await)
}

/// Every entry under `prefix`, read in pages of [`MAX_WEBHOOKS`] (a tenant holds about that
/// many webhooks, but none may be missed by the deliverer or retention's guard).
async fn all_under(
    store: &dyn Store,
    tenant: &str,
    prefix: &str,
) -> Result<Vec<crate::store::Entry>> {
    let mut out: Vec<crate::store::Entry> = Vec::new();
    loop {
        let mut range = Range::first(prefix, MAX_WEBHOOKS);
        if let Some(last) = out.last() {
            range = range.after(last.key.path().to_string());
        }
        let page = store.list_range(tenant, &range).await?;
        let done = page.len() < MAX_WEBHOOKS;
        out.extend(page);
        if done {
            return Ok(out);
        }
    }
}

/// Names of the tenant's webhooks, all of them.
pub async fn names(store: &dyn Store, tenant: &str) -> Result<Vec<String>> {
    Ok(all_under(store, tenant, WEBHOOKS)
        .await?
        .into_iter()
        .filter_map(|e| e.key.path().strip_prefix(WEBHOOKS).map(str::to_string))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_without_the_cluster_flag() {
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:0:10.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "100::1",
            "198.18.0.1",
            "192.0.0.8",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!public_address(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:db9::1",
        ] {
            assert!(public_address(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_need_https_a_host_and_a_reachable_address() {
        assert!(check_url("https://hooks.example.com/x", false, false).is_ok());
        assert!(check_url("http://hooks.example.com/x", false, false).is_err());
        assert!(check_url("http://hooks.example.com/x", true, false).is_ok());
        assert!(check_url("ftp://hooks.example.com/x", true, false).is_err());
        assert!(check_url("https://127.0.0.1:9/x", false, false).is_err());
        assert!(check_url("https://127.0.0.1:9/x", false, true).is_ok());
        assert!(check_url("https://localhost/x", false, false).is_err());
        assert!(check_url("https://[::1]/x", false, false).is_err());
        assert!(check_url("https://u:p@hooks.example.com/", false, false).is_err());
        assert!(check_url("not a url", false, false).is_err());
    }

    #[test]
    fn signatures_cover_id_timestamp_and_body() {
        let s = signature("k".repeat(16).as_str(), "d-1", 100, b"{}");
        assert!(s.starts_with("sha256=") && s.len() == 7 + 64);
        assert_ne!(s, signature(&"k".repeat(16), "d-2", 100, b"{}"));
        assert_ne!(s, signature(&"k".repeat(16), "d-1", 101, b"{}"));
        assert_ne!(s, signature(&"k".repeat(16), "d-1", 100, b"{ }"));
        assert_ne!(s, signature(&"j".repeat(16), "d-1", 100, b"{}"));
        assert_eq!(s, signature(&"k".repeat(16), "d-1", 100, b"{}"));
    }

    #[test]
    fn retry_delays_grow_and_stay_between_half_and_the_ceiling() {
        let (b, c) = (Duration::from_millis(100), Duration::from_secs(2));
        for attempt in 0..10 {
            let ceiling = b.saturating_mul(1 << attempt).min(c);
            for _ in 0..20 {
                let d = retry_delay(attempt, b, c);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let ok = CreateWebhook {
            name: "ops".into(),
            url: "https://hooks.example.com/x".into(),
            events: vec!["job.finished".into(), "state.*".into()],
            ..CreateWebhook::default()
        };
        let (w, secret) = validate(&ok, false, "admin", 1, Position::default()).unwrap();
        assert_eq!(secret.as_deref(), Some(w.secret.as_str()));
        let bad = |f: &dyn Fn(&mut CreateWebhook), field: &str| {
            let mut r = ok.clone();
            f(&mut r);
            let e = validate(&r, false, "admin", 1, Position::default()).unwrap_err();
            assert!(e.to_string().starts_with(field), "{field}: {e}");
        };
        bad(&|r| r.name = "Bad Name".into(), "name");
        bad(&|r| r.url = "http://hooks.example.com".into(), "url");
        bad(&|r| r.events = vec!["job.exploded".into()], "type");
        bad(&|r| r.filter = Some("role=(".into()), "filter");
        bad(&|r| r.secret = Some("short".into()), "secret");
        bad(&|r| r.ca_pem = Some("not pem".into()), "ca_pem");
        bad(&|r| r.max_attempts = Some(0), "max_attempts");
    }

    #[test]
    fn the_cursor_skips_what_the_filter_does_not_take() {
        let l = |r: u64, kind: &'static str| Logged {
            position: Position {
                revision: r,
                index: Some(0),
            },
            event: events::Event::new(kind, "x", 1),
        };
        let page = vec![
            l(1, "job.submitted"),
            l(2, "job.started"),
            l(3, "job.finished"),
        ];
        let f = Filter::default().with_types("job.finished").unwrap();
        let (skipped, next) = next_to_send(&page, &f);
        assert_eq!(skipped.map(|p| p.revision), Some(2));
        assert_eq!(next.map(|n| n.position.revision), Some(3));
        let f = Filter::default().with_types("agent.*").unwrap();
        let (skipped, next) = next_to_send(&page, &f);
        assert_eq!((skipped.map(|p| p.revision), next), (Some(3), None));
    }
}

#[cfg(test)]
mod paging {
    use super::*;

    /// More webhooks than one page (a tenant over the limit, as a restore or an older release
    /// may leave): the deliverer sees every one, and retention's guard every cursor.
    #[tokio::test]
    async fn the_deliverer_and_the_guard_see_past_the_first_page() {
        let (_dir, store) = crate::testing::temp_redb().await;
        for i in 0..=MAX_WEBHOOKS {
            let name = format!("w{i:03}");
            // The last one is the furthest behind.
            let after = if i == MAX_WEBHOOKS { "3.0" } else { "9.0" };
            let txn = Txn::new()
                .put(
                    webhook_key("t", &name).unwrap(),
                    b"{}".to_vec(),
                    Expect::Absent,
                )
                .put(
                    cursor_key("t", &name).unwrap(),
                    serde_json::to_vec(&Cursor {
                        after: after.into(),
                        ..Cursor::default()
                    })
                    .unwrap(),
                    Expect::Absent,
                );
            store.commit(txn).await.unwrap();
        }
        let ns = names(store.as_ref(), "t").await.unwrap();
        assert_eq!(ns.len(), MAX_WEBHOOKS + 1);
        assert_eq!(ns.last().map(String::as_str), Some("w100"));
        assert_eq!(
            oldest_pending(store.as_ref(), "t").await.unwrap(),
            Some(Position::parse("3.0").unwrap())
        );
    }
}

#[cfg(test)]
mod limit {
    use super::*;

    fn req(i: usize) -> CreateWebhook {
        CreateWebhook {
            name: format!("w{i:03}"),
            url: "https://hooks.example.com/x".into(),
            ..CreateWebhook::default()
        }
    }

    /// Ten creations racing at 99 webhooks: exactly one more is made (the count is checked in
    /// the creating transaction); a deletion frees a place for the next.
    #[tokio::test]
    async fn creations_racing_at_the_limit_make_no_more_than_the_limit() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let s = store.as_ref();
        for i in 0..MAX_WEBHOOKS - 1 {
            create(s, "t", &req(i), false, "admin", 1).await.unwrap();
        }
        let reqs: Vec<CreateWebhook> = (0..10).map(|i| req(500 + i)).collect();
        let racing: Vec<_> = reqs
            .iter()
            .map(|r| create(s, "t", r, false, "admin", 1))
            .collect();
        let results = futures::future::join_all(racing).await;
        let made = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(made, 1, "{results:?}");
        assert!(
            results
                .iter()
                .filter_map(|r| r.as_ref().err())
                .all(|e| matches!(e, WebhookError::Invalid(m) if m.contains("at most")))
        );
        assert_eq!(names(s, "t").await.unwrap().len(), MAX_WEBHOOKS);
        assert!(create(s, "t", &req(900), false, "admin", 1).await.is_err());
        delete(s, "t", "w000").await.unwrap();
        create(s, "t", &req(900), false, "admin", 1).await.unwrap();
        assert_eq!(names(s, "t").await.unwrap().len(), MAX_WEBHOOKS);
        assert!(matches!(
            create(s, "t", &req(900), false, "admin", 1).await,
            Err(WebhookError::Exists(_))
        ));
    }
}

#[cfg(test)]
mod vector {
    /// The signature of the README's recipe (`examples/webhook-verify.py`) for fixed inputs.
    #[test]
    fn signature_matches_the_documented_recipe() {
        assert_eq!(
            super::signature(&"k".repeat(16), "d-1", 100, b"{}"),
            "sha256=2bda518f09da56821d50d9522e6aa76b473953dee4f085d5454c9565e92b9db8"
        );
    }
}

#[cfg(test)]
mod dropped {
    use super::*;
    use std::sync::Mutex;

    /// A loopback receiver answering 200 and keeping each body.
    async fn receiver() -> (u16, Arc<Mutex<Vec<serde_json::Value>>>) {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = l.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let sink = sink.clone();
                let take = move |r: crate::testing::receiver::Received| {
                    let body = serde_json::from_slice(&r.body).unwrap();
                    sink.lock().unwrap().push(body);
                    true
                };
                let _ = crate::testing::receiver::serve(tcp, 1 << 20, take).await;
            }
        });
        (port, got)
    }

    /// A webhook left behind past the log's hold: collection records a durable `dropped`
    /// delivery (from, to, count of what it takes) and moves its cursor past them; the
    /// receiver is told with a `webhook.dropped` notice before the next event.
    #[tokio::test]
    async fn a_webhook_behind_past_the_hold_gets_a_dropped_record_and_a_notice() {
        let (_dir, store) = crate::testing::temp_redb().await;
        let s = store.as_ref();
        let epoch = s.next_epoch().await.unwrap();
        let (port, got) = receiver().await;
        let req = CreateWebhook {
            name: "ci".into(),
            url: format!("http://127.0.0.1:{port}/hook"),
            events: vec!["job.submitted".into()],
            allow_http: true,
            ..CreateWebhook::default()
        };
        create(s, "t", &req, true, "admin", 1).await.unwrap();
        let mut ids = Vec::new();
        for i in 0..20 {
            let mut txn = Txn::new().put(
                Key::new("t", format!("jobs/j{i}")).unwrap(),
                b"{}".to_vec(),
                Expect::Absent,
            );
            // Every other event is one the webhook does not take.
            let kind = if i % 2 == 0 {
                "job.submitted"
            } else {
                "job.started"
            };
            events::record(&mut txn, "t", &events::Event::new(kind, format!("j{i}"), 1)).unwrap();
            let rev = s.commit(txn).await.unwrap();
            ids.push(format!("{rev}.0"));
        }
        let bounds = events::Bounds {
            max_events: 5,
            max_age_ms: u64::MAX / 4,
        };
        for _ in 0..10 {
            events::collect(s, "t", epoch, bounds, 100, 2)
                .await
                .unwrap();
        }
        // Ten went (twice the bound kept), five of them the webhook's.
        let w = get(s, "t", "ci").await.unwrap();
        let d = w
            .deliveries
            .iter()
            .find(|d| d.status == "dropped")
            .expect("a dropped record");
        assert_eq!(d.from_event.as_deref(), Some(ids[0].as_str()));
        assert_eq!(d.event_id, ids[8]);
        assert_eq!(d.count, Some(5));
        assert_eq!(w.delivered_to, ids[9]);

        let cfg = DeliveryConfig {
            allow_private: true,
            ..DeliveryConfig::default()
        };
        let mut client = None;
        let count = |_: &str| {};
        for _ in 0..2 {
            let step = deliver_next(s, "t", "ci", epoch, &cfg, &mut client, &count)
                .await
                .unwrap();
            assert_eq!(step, Step::Moved);
        }
        let bodies = got.lock().unwrap().clone();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        assert_eq!(bodies[0]["event"]["type"], "webhook.dropped");
        assert_eq!(bodies[0]["event"]["data"]["count"], 5);
        assert!(
            !ids.iter().any(|i| bodies[0]["event"]["id"] == i.as_str()),
            "the notice has an id of its own: {}",
            bodies[0]["event"]["id"]
        );
        assert_eq!(bodies[0]["event"]["data"]["from"], ids[0].as_str());
        assert_eq!(bodies[1]["event"]["id"], ids[10].as_str());
        // The notice is sent once.
        let w = get(s, "t", "ci").await.unwrap();
        assert_eq!(w.delivered_to, ids[10]);
    }
}
