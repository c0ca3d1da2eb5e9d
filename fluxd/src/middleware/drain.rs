//! Lets clients see a response given before their request body was read.
//!
//! A handler may answer (401, 403, 413, 415, 429, ...) without reading the body. Over HTTP/2,
//! hyper then sends the response and resets the stream with `RST_STREAM(NO_ERROR)`, which RFC
//! 9113 §8.1 allows; but some clients (curl 7.88 with nghttp2 among them) then often drop the
//! response they were sent and report no status at all. Over HTTP/1.1 hyper closes the
//! connection instead, and closing a socket with unread bytes in it makes the kernel send a
//! TCP reset, which can destroy the response before the client reads it. As hyper's
//! maintainers recommend, the server reads the rest of the body before it answers, so the
//! stream or connection ends normally.
//!
//! The read is bounded: at most [`DrainLimits::max_bytes`] bytes and [`DrainLimits::max_time`];
//! a body announced larger than the byte budget is not read at all. The bytes are discarded,
//! never parsed, and the handler has already decided (authorization first, body later stays
//! true). An HTTP/1 request with `Expect: 100-continue` whose body nobody began to read is left
//! alone: its client sends the body only once hyper asks for it, so nothing is in flight.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{Version, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use tokio::sync::oneshot;

/// How much of an unread request body is read before answering.
#[derive(Clone, Copy, Debug)]
pub struct DrainLimits {
    /// Bytes read at most; a body announced larger is not read at all.
    pub max_bytes: u64,
    /// Time spent reading at most.
    pub max_time: Duration,
}

impl DrainLimits {
    /// The budget for a node whose request body limit is `max_body_bytes`: enough to read a
    /// body somewhat over the limit (the common 413), bounded in time.
    pub fn for_body_limit(max_body_bytes: usize) -> DrainLimits {
        DrainLimits {
            max_bytes: (max_body_bytes as u64).saturating_mul(2).max(64 * 1024),
            max_time: Duration::from_secs(2),
        }
    }
}

/// What to do with the unread rest of a body: read it (up to how many bytes) or leave it.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing to do: the body was read to its end, or its client waits for `100 Continue`.
    Leave,
    /// Read and discard at most this many bytes.
    Read(u64),
    /// Announced larger than the budget: answer at once.
    TooLarge,
}

/// Decides what to do with the unread rest of a request body: `left` is what the body still
/// announces (exact length, if known), `ended` whether it is done, `waiting` whether its
/// client still waits for `100 Continue` (HTTP/1 `Expect: 100-continue`, body never polled).
pub fn plan(left: Option<u64>, ended: bool, waiting: bool, limits: &DrainLimits) -> Plan {
    if ended || waiting || left == Some(0) {
        return Plan::Leave;
    }
    match left {
        Some(n) if n > limits.max_bytes => Plan::TooLarge,
        _ => Plan::Read(limits.max_bytes),
    }
}

/// The request body as handlers see it: it hands back what is left of it when dropped unread.
struct Returning {
    inner: Option<Body>,
    /// The rest, and whether anyone polled the body (which makes hyper send `100 Continue`).
    back: Option<oneshot::Sender<(Body, bool)>>,
    polled: bool,
}

impl HttpBody for Returning {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        self.polled = true;
        match self.inner.as_mut() {
            Some(b) => Pin::new(b).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| http_body::SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        if let (Some(body), Some(back)) = (self.inner.take(), self.back.take())
            && !body.is_end_stream()
        {
            let _ = back.send((body, self.polled));
        }
    }
}

/// Reads and discards at most `max_bytes` of `body` within `max_time`.
async fn discard(body: Body, max_bytes: u64, max_time: Duration) {
    let mut stream = body.into_data_stream();
    let mut read = 0u64;
    let _ = tokio::time::timeout(max_time, async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len() as u64;
            if read > max_bytes {
                break;
            }
        }
    })
    .await;
}

/// The layer: hands handlers a body that comes back when left unread, and reads that rest
/// (bounded) before the response goes out.
pub fn drain_unread(
    State(limits): State<Arc<DrainLimits>>,
    req: Request,
    next: Next,
) -> impl Future<Output = Response> + Send + 'static {
    let expect_continue = req.version() < Version::HTTP_2
        && req
            .headers()
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (tx, mut rx) = oneshot::channel();
    let req = req.map(|b| {
        Body::new(Returning {
            inner: Some(b),
            back: Some(tx),
            polled: false,
        })
    });
    let answer = super::forward(next, req);
    async move {
        let resp = answer.await;
        if let Ok((rest, polled)) = rx.try_recv() {
            let left = rest.size_hint().exact();
            let waiting = expect_continue && !polled;
            if let Plan::Read(max) = plan(left, rest.is_end_stream(), waiting, &limits) {
                // Boxed: the outermost layer's future lives as long as every request.
                Box::pin(discard(rest, max, limits.max_time)).await;
            }
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> DrainLimits {
        DrainLimits {
            max_bytes: 1000,
            max_time: Duration::from_secs(1),
        }
    }

    #[test]
    fn finished_bodies_and_bodies_still_waiting_for_100_continue_are_left_alone() {
        let l = limits();
        assert_eq!(plan(Some(10), true, false, &l), Plan::Leave);
        assert_eq!(plan(Some(0), false, false, &l), Plan::Leave);
        assert_eq!(plan(Some(10), false, true, &l), Plan::Leave);
        assert_eq!(plan(None, false, true, &l), Plan::Leave);
    }

    #[test]
    fn the_rest_is_read_within_the_budget_and_a_larger_announced_body_is_not() {
        let l = limits();
        assert_eq!(plan(Some(1000), false, false, &l), Plan::Read(1000));
        assert_eq!(plan(None, false, false, &l), Plan::Read(1000));
        assert_eq!(plan(Some(1001), false, false, &l), Plan::TooLarge);
    }

    #[test]
    fn the_budget_covers_a_body_over_the_limit_and_has_a_floor() {
        assert_eq!(DrainLimits::for_body_limit(1 << 20).max_bytes, 2 << 20);
        assert_eq!(DrainLimits::for_body_limit(10).max_bytes, 64 * 1024);
    }

    #[tokio::test]
    async fn an_unread_body_comes_back_when_dropped_and_a_read_one_does_not() {
        let (tx, mut rx) = oneshot::channel();
        let b = Returning {
            inner: Some(Body::from("hello")),
            back: Some(tx),
            polled: false,
        };
        drop(b);
        let (rest, polled) = rx.try_recv().expect("unread body handed back");
        assert!(!polled);
        let bytes = axum::body::to_bytes(rest, 100).await.unwrap();
        assert_eq!(&bytes[..], b"hello");

        let (tx, mut rx) = oneshot::channel();
        let b = Body::new(Returning {
            inner: Some(Body::from("hello")),
            back: Some(tx),
            polled: false,
        });
        assert_eq!(&axum::body::to_bytes(b, 100).await.unwrap()[..], b"hello");
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn discard_stops_at_its_time_limit_on_a_stalled_body() {
        let stalled = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            discard(Body::from_stream(stalled), 1000, Duration::from_millis(100)),
        )
        .await;
        assert!(done.is_ok(), "a stalled body held the drain past its limit");
    }

    #[tokio::test]
    async fn discard_stops_at_its_byte_limit_on_an_endless_body() {
        let endless =
            futures::stream::repeat_with(|| Ok::<_, std::io::Error>(Bytes::from(vec![0u8; 100])));
        let done = tokio::time::timeout(
            Duration::from_secs(10),
            discard(Body::from_stream(endless), 1000, Duration::from_secs(60)),
        )
        .await;
        assert!(
            done.is_ok(),
            "an endless body held the drain past its byte limit"
        );
    }
}
