//! Idle connections are closed after `--idle-timeout`, whatever the protocol.
//!
//! HTTP/2 keep-alive pings prove that a peer is there, not that it needs the connection: a
//! client that answers pings would otherwise hold an idle connection (and its descriptor and
//! place under the connection caps) for ever, and hyper has no idle timeout of its own. Each
//! accepted connection gets an [`Activity`]: its service is wrapped ([`Tracked`]) so that a
//! request counts as in flight from its call until its response body is dropped (so a
//! followed log or a long-poll is never idle), and its stream ([`crate::conns::Counted`]) ends
//! reading (EOF) once nothing has been in flight for the timeout; hyper then closes the
//! connection. Pings and other frames do not count as activity.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, Response};
use futures::future::BoxFuture;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// What one connection is doing: requests in flight, and when the last one ended.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    inflight: AtomicUsize,
    /// Milliseconds after `start` at which the last request ended (or the connection opened).
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            inflight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        })
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.inflight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// How long nothing has been in flight; `None` while a request is.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.inflight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::SeqCst));
        Some(self.start.elapsed().saturating_sub(last))
    }
}

/// A request in flight; dropping it ends it.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_ms
            .store(a.start.elapsed().as_millis() as u64, Ordering::SeqCst);
        a.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The idle watch of a connection's stream: whether it has been idle too long, checked when
/// it is read and when its timer fires.
pub struct Watch {
    activity: Arc<Activity>,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
}

impl Watch {
    pub fn new(activity: Arc<Activity>, timeout: Duration) -> Watch {
        Watch {
            activity,
            timeout,
            timer: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// Whether the connection has been idle for the timeout; otherwise the timer is set to
    /// wake the reader when it could be.
    pub fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let wait = match self.activity.idle_for() {
                Some(idle) if idle >= self.timeout => return true,
                Some(idle) => self.timeout - idle,
                // Busy: look again a timeout from now.
                None => self.timeout,
            };
            self.timer
                .as_mut()
                .reset(tokio::time::Instant::now() + wait);
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
        }
    }
}

/// A connection's service, counting its requests in flight on the connection's [`Activity`].
#[derive(Clone)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Tracked<S> {
        Tracked { inner, activity }
    }
}

impl<S, R, B> tower::Service<Request<R>> for Tracked<S>
where
    S: tower::Service<Request<R>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
{
    type Response = Response<TrackedBody<B>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<R>) -> Self::Future {
        let busy = self.activity.begin();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await?;
            Ok(resp.map(|body| TrackedBody {
                inner: Box::pin(body),
                _busy: busy,
            }))
        })
    }
}

/// A response body that keeps its request in flight until it is dropped (fully sent, or the
/// stream was reset).
pub struct TrackedBody<B> {
    inner: Pin<Box<B>>,
    _busy: Busy,
}

impl<B: Body> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.inner.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_connection_is_idle_only_with_nothing_in_flight() {
        let a = Activity::new();
        let mut w = Watch::new(a.clone(), Duration::from_secs(10));
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(!w.expired(&mut cx));
        let busy = a.begin();
        assert_eq!(a.idle_for(), None);
        tokio::time::advance(Duration::from_secs(30)).await;
        // A long request (a followed log) keeps the connection however long it takes.
        assert!(!w.expired(&mut cx));
        drop(busy);
        assert!(!w.expired(&mut cx));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(!w.expired(&mut cx));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(w.expired(&mut cx));
    }
}
