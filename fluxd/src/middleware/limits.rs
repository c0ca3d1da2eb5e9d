//! Request-count limits: requests beyond what a node should hold at once are shed with
//! `429 Too Many Requests` and `Retry-After`, instead of queueing until the node falls over.
//!
//! Each kind of request has a pool of its own ([`PoolKind`], chosen from the matched route by
//! `middleware::routes`), so that one kind cannot starve another: users' long-polls and log
//! streams, agents' task polls, the rest of the agent protocol (heartbeats, attempt start,
//! output and result), agent registrations, and ordinary requests. The streams and agent polls
//! pools keep their permits until the response body ends (a task poll waits in its body).
//!
//! Inside every pool a tenant may hold at most its share of the pool, and one token at most its
//! own (smaller) share, so that one tenant, or one token, cannot take a pool from the others.
//! Requests without a token count as one tenant of their own. [`admit`] is that rule.
//!
//! The body of an admitted request must arrive within the body read timeout; a slower one is
//! cut off with 408 ([`BodyDeadline`]), so a slow sender cannot hold a permit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, HttpBody};
use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use futures::future::{self, Either};

use super::access::Authenticated;
use super::routes::{self, PoolKind, Rule};
use crate::error::ApiError;

/// The largest share of every pool one tenant, and one token, may hold, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shares {
    pub tenant_percent: u32,
    pub token_percent: u32,
}

/// The caps of one pool: in all, per tenant and per token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    pub total: usize,
    pub per_tenant: usize,
    pub per_token: usize,
}

impl Caps {
    /// The caps of a pool of `total` with these shares; a share is at least one request.
    pub fn new(total: usize, shares: Shares) -> Caps {
        let share = |percent: u32| {
            let n = (total as u128 * u128::from(percent.min(100)) / 100) as usize;
            n.max(1)
        };
        Caps {
            total,
            per_tenant: share(shares.tenant_percent),
            per_token: share(shares.token_percent),
        }
    }
}

/// What a pool holds now: in all, for the caller's tenant and for the caller's token.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Held {
    pub total: usize,
    pub tenant: usize,
    pub token: usize,
}

/// Why a request is not admitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The pool is full.
    Full,
    /// The caller's tenant holds its share.
    TenantShare,
    /// The caller's token holds its share.
    TokenShare,
}

/// Whether one more request may enter a pool with `caps` that holds `held`.
pub fn admit(caps: &Caps, held: &Held) -> Result<(), Refusal> {
    if held.total >= caps.total {
        Err(Refusal::Full)
    } else if held.tenant >= caps.per_tenant {
        Err(Refusal::TenantShare)
    } else if held.token >= caps.per_token {
        Err(Refusal::TokenShare)
    } else {
        Ok(())
    }
}

/// Who holds a permit: a tenant (`None` for requests without a token) and a token id.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    pub tenant: Option<String>,
    pub token: Option<String>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    tenants: HashMap<Option<String>, usize>,
    tokens: HashMap<String, usize>,
}

/// One pool: its caps and what each tenant and token holds of it.
pub struct Pool {
    kind: PoolKind,
    caps: Caps,
    counts: Mutex<Counts>,
}

/// A place in a pool, given back when dropped.
pub struct Permit {
    pool: Arc<Pool>,
    holder: Holder,
}

impl Pool {
    pub fn new(kind: PoolKind, caps: Caps) -> Arc<Pool> {
        Arc::new(Pool {
            kind,
            caps,
            counts: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // The counts are updated in single statements: a panic cannot leave them half-done.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for `holder`, or why there is none.
    pub fn try_acquire(self: &Arc<Self>, holder: Holder) -> Result<Permit, Refusal> {
        let mut c = self.counts();
        let held = Held {
            total: c.total,
            tenant: c.tenants.get(&holder.tenant).copied().unwrap_or(0),
            token: holder
                .token
                .as_ref()
                .and_then(|t| c.tokens.get(t))
                .copied()
                .unwrap_or(0),
        };
        admit(&self.caps, &held)?;
        c.total += 1;
        *c.tenants.entry(holder.tenant.clone()).or_default() += 1;
        if let Some(t) = &holder.token {
            *c.tokens.entry(t.clone()).or_default() += 1;
        }
        drop(c);
        Ok(Permit {
            pool: self.clone(),
            holder,
        })
    }

    /// How many places are held in all.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.counts().total
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut c = self.pool.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.tenants.get_mut(&self.holder.tenant) {
            *n -= 1;
            if *n == 0 {
                c.tenants.remove(&self.holder.tenant);
            }
        }
        if let Some(t) = &self.holder.token
            && let Some(n) = c.tokens.get_mut(t)
        {
            *n -= 1;
            if *n == 0 {
                c.tokens.remove(t);
            }
        }
    }
}

/// The size of each pool.
#[derive(Clone, Copy, Debug)]
pub struct PoolSizes {
    pub requests: usize,
    pub streams: usize,
    pub agent_polls: usize,
    pub agent_calls: usize,
    pub registrations: usize,
}

pub struct Limits {
    pools: HashMap<PoolKind, Arc<Pool>>,
    body_read_timeout: Duration,
}

impl Limits {
    pub fn new(sizes: PoolSizes, shares: Shares, body_read_timeout: Duration) -> Limits {
        let size = |k: PoolKind| match k {
            PoolKind::Requests => sizes.requests,
            PoolKind::Streams => sizes.streams,
            PoolKind::AgentPolls => sizes.agent_polls,
            PoolKind::AgentCalls => sizes.agent_calls,
            PoolKind::Registrations => sizes.registrations,
        };
        Limits {
            pools: PoolKind::ALL
                .into_iter()
                .map(|k| (k, Pool::new(k, Caps::new(size(k), shares))))
                .collect(),
            body_read_timeout,
        }
    }

    pub fn pool(&self, kind: PoolKind) -> &Arc<Pool> {
        &self.pools[&kind]
    }
}

/// The deadline of a request body, put in the request's extensions: whether it passed.
#[derive(Clone, Debug)]
pub struct BodyDeadline {
    after: Duration,
    passed: Arc<AtomicBool>,
}

impl BodyDeadline {
    pub fn passed(&self) -> bool {
        self.passed.load(Ordering::Relaxed)
    }

    /// The answer to a body that did not arrive in time.
    pub fn error(&self) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            format!(
                "the request body did not arrive within {} s (--body-read-timeout)",
                self.after.as_secs_f64()
            ),
        )
    }
}

/// The error a body past its deadline ends with.
#[derive(Debug)]
struct BodyTimedOut(Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the request body did not arrive within {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// `body`, failing once `deadline.after` has passed since now.
fn with_deadline(body: Body, deadline: BodyDeadline) -> Body {
    let sleep = Box::pin(tokio::time::sleep(deadline.after));
    let state = Some((body.into_data_stream(), sleep, deadline));
    Body::from_stream(futures::stream::unfold(state, |state| async move {
        let (mut stream, mut sleep, deadline) = state?;
        tokio::select! {
            biased;
            chunk = stream.next() => {
                let chunk = chunk?.map_err(BoxError::from);
                Some((chunk, Some((stream, sleep, deadline))))
            }
            () = &mut sleep => {
                deadline.passed.store(true, Ordering::Relaxed);
                let e = BoxError::from(BodyTimedOut(deadline.after));
                Some((Err(e), None))
            }
        }
    }))
}

fn refused(kind: PoolKind, caps: &Caps, why: Refusal, holder: &Holder) -> Response {
    let what = kind.what();
    let message = match (why, &holder.tenant) {
        (Refusal::Full, _) => {
            format!("this node is at its limit of concurrent {what}; retry later")
        }
        (Refusal::TenantShare, Some(t)) => format!(
            "tenant {t} holds its share ({}) of this node's concurrent {what}; retry later",
            caps.per_tenant
        ),
        (Refusal::TenantShare, None) => format!(
            "requests without a token hold their share ({}) of this node's concurrent {what}; retry later",
            caps.per_tenant
        ),
        (Refusal::TokenShare, _) => format!(
            "this token holds its share ({}) of this node's concurrent {what}; retry later",
            caps.per_token
        ),
    };
    let mut e = ApiError::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", message);
    e.retry_after = Some(if kind == PoolKind::Registrations {
        2
    } else {
        1
    });
    e.into_response()
}

/// Admits a request to the pool of its route, for its tenant and token (as verified by
/// `middleware::access`), or answers 429; puts the body read timeout on its body.
pub fn shed(
    State(limits): State<Arc<Limits>>,
    req: Request,
    next: Next,
) -> impl Future<Output = Response> + Send + 'static {
    let rule = req.extensions().get::<Rule>().copied().unwrap_or_else(|| {
        let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str());
        routes::rule(req.method(), route)
    });
    let holder = match req.extensions().get::<Authenticated>() {
        Some(Authenticated(c)) => Holder {
            tenant: Some(c.tenant.clone()),
            token: Some(c.jti.clone()),
        },
        None => Holder::default(),
    };
    let pool = limits.pool(rule.pool);
    let permit = match pool.try_acquire(holder.clone()) {
        Ok(p) => p,
        Err(why) => {
            let refusal = refused(pool.kind, &pool.caps, why, &holder);
            return Either::Left(future::ready(refusal));
        }
    };
    let mut req = req;
    if rule.body_deadline && req.body().size_hint().exact() != Some(0) {
        let deadline = BodyDeadline {
            after: limits.body_read_timeout,
            passed: Arc::new(AtomicBool::new(false)),
        };
        req.extensions_mut().insert(deadline.clone());
        req = req.map(|b| with_deadline(b, deadline));
    }
    let answer = super::forward(next, req);
    let holds_body = rule.pool.holds_body();
    Either::Right(async move {
        let resp = answer.await;
        if !holds_body {
            drop(permit);
            return resp;
        }
        // The permit lives as long as the response body, so a stream counts until it ends, not
        // only until its headers are sent.
        resp.map(|inner| {
            Body::new(Holding {
                inner,
                _permit: permit,
            })
        })
    })
}

/// A response body that holds what it is given until it is dropped; its frames, end and size
/// are the inner body's (so a body that knows it has ended goes out as one frame that ends
/// the stream).
struct Holding<P> {
    inner: Body,
    _permit: P,
}

impl<P: Unpin> HttpBody for Holding<P> {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A held body is the inner body as it is: its size, its frames and its end.
    #[tokio::test]
    async fn a_held_body_keeps_its_size_and_says_when_it_ended() {
        let dropped = Arc::new(AtomicBool::new(false));
        struct Permit(Arc<AtomicBool>);
        impl Drop for Permit {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let mut body = Holding {
            inner: Body::from("abc"),
            _permit: Permit(dropped.clone()),
        };
        assert_eq!(body.size_hint().exact(), Some(3));
        assert!(!body.is_end_stream());
        let frame = futures::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx))
            .await
            .expect("a frame")
            .expect("data");
        assert_eq!(frame.into_data().ok().as_deref(), Some(&b"abc"[..]));
        assert!(body.is_end_stream());
        assert!(!dropped.load(Ordering::SeqCst));
        drop(body);
        assert!(dropped.load(Ordering::SeqCst));
    }

    const SHARES: Shares = Shares {
        tenant_percent: 50,
        token_percent: 25,
    };

    #[test]
    fn shares_are_parts_of_the_pool_and_at_least_one() {
        assert_eq!(
            Caps::new(512, SHARES),
            Caps {
                total: 512,
                per_tenant: 256,
                per_token: 128
            }
        );
        assert_eq!(Caps::new(4, SHARES).per_tenant, 2);
        assert_eq!(Caps::new(4, SHARES).per_token, 1);
        let tiny = Caps::new(1, SHARES);
        assert_eq!((tiny.per_tenant, tiny.per_token), (1, 1));
        let whole = Shares {
            tenant_percent: 100,
            token_percent: 100,
        };
        assert_eq!(Caps::new(7, whole).per_tenant, 7);
        assert_eq!(Caps::new(usize::MAX, whole).per_token, usize::MAX);
    }

    #[test]
    fn admit_checks_the_pool_then_the_tenant_then_the_token() {
        let caps = Caps::new(8, SHARES);
        let held = |total, tenant, token| Held {
            total,
            tenant,
            token,
        };
        assert_eq!(admit(&caps, &held(0, 0, 0)), Ok(()));
        assert_eq!(admit(&caps, &held(7, 3, 1)), Ok(()));
        assert_eq!(admit(&caps, &held(8, 0, 0)), Err(Refusal::Full));
        assert_eq!(admit(&caps, &held(5, 4, 0)), Err(Refusal::TenantShare));
        assert_eq!(admit(&caps, &held(5, 3, 2)), Err(Refusal::TokenShare));
    }

    fn who(tenant: &str, token: &str) -> Holder {
        Holder {
            tenant: Some(tenant.into()),
            token: Some(token.into()),
        }
    }

    #[test]
    fn one_tenant_cannot_take_a_pool_from_another() {
        let pool = Pool::new(PoolKind::Streams, Caps::new(4, SHARES));
        let a1 = pool.try_acquire(who("acme", "t1")).unwrap();
        // One token holds its share; another token of the same tenant gets the tenant's rest.
        assert_eq!(
            pool.try_acquire(who("acme", "t1")).err(),
            Some(Refusal::TokenShare)
        );
        let a2 = pool.try_acquire(who("acme", "t2")).unwrap();
        assert_eq!(
            pool.try_acquire(who("acme", "t3")).err(),
            Some(Refusal::TenantShare)
        );
        // Another tenant still gets in, until the pool is full.
        let g1 = pool.try_acquire(who("globex", "g1")).unwrap();
        let anon = pool.try_acquire(Holder::default()).unwrap();
        assert_eq!(pool.held(), 4);
        assert_eq!(
            pool.try_acquire(who("initech", "i1")).err(),
            Some(Refusal::Full)
        );
        // Places come back when permits drop, and nothing is left counted.
        drop((a1, g1, anon));
        assert_eq!(pool.held(), 1);
        let again = pool.try_acquire(who("acme", "t1")).unwrap();
        drop((a2, again));
        assert_eq!(pool.held(), 0);
        let c = pool.counts();
        assert!(c.tenants.is_empty() && c.tokens.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_slower_than_its_deadline_is_cut_off() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<Result<axum::body::Bytes, BoxError>>();
        tx.unbounded_send(Ok("{".into())).unwrap();
        let deadline = BodyDeadline {
            after: Duration::from_secs(3),
            passed: Arc::new(AtomicBool::new(false)),
        };
        let body = with_deadline(Body::from_stream(rx), deadline.clone());
        let started = tokio::time::Instant::now();
        let err = axum::body::to_bytes(body, 1 << 20).await.unwrap_err();
        assert!(deadline.passed(), "{err}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert_eq!(deadline.error().status, StatusCode::REQUEST_TIMEOUT);
        drop(tx);
        // A body that arrives in time is passed through whole.
        let on_time = BodyDeadline {
            after: Duration::from_secs(3),
            passed: Arc::new(AtomicBool::new(false)),
        };
        let bytes = axum::body::to_bytes(with_deadline(Body::from("{}"), on_time.clone()), 64)
            .await
            .unwrap();
        assert_eq!(&bytes[..], b"{}");
        assert!(!on_time.passed());
    }
}
