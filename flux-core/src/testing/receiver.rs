//! A recording HTTP/1.1 server for webhook receivers: the end-to-end tests' HTTPS receiver, the
//! chaos run's and flux-core's own tests. hyper reads each request; the caller's `record`
//! decides from the headers and body whether it is taken (answered 200, with an empty body,
//! once `record` has returned) or refused (answered 400). A body over the size given is
//! answered 413 and not recorded. Each connection serves one request and is closed.

use std::collections::BTreeMap;
use std::convert::Infallible;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::StatusCode;
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

/// One request as the server got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// By lower-case name (the last of repeated ones); values not in UTF-8 decoded lossily.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Serves one connection (plain TCP or TLS) until its request is answered. `record` is called
/// with each request whose body is at most `max_body` bytes: `true` takes it (200), `false`
/// refuses it (400).
pub async fn serve<IO, F>(io: IO, max_body: usize, record: F) -> Result<(), hyper::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(Received) -> bool + Clone + Send + Sync + 'static,
{
    let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let record = record.clone();
        async move {
            let (parts, body) = req.into_parts();
            let status = match Limited::new(body, max_body).collect().await {
                Ok(b) => {
                    let got = Received {
                        headers: parts
                            .headers
                            .iter()
                            .map(|(k, v)| {
                                let v = String::from_utf8_lossy(v.as_bytes());
                                (k.as_str().to_string(), v.trim().to_string())
                            })
                            .collect(),
                        body: b.to_bytes().to_vec(),
                    };
                    if record(got) {
                        StatusCode::OK
                    } else {
                        StatusCode::BAD_REQUEST
                    }
                }
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    StatusCode::PAYLOAD_TOO_LARGE
                }
                Err(_) => StatusCode::BAD_REQUEST,
            };
            let mut resp = hyper::Response::new(Empty::<Bytes>::new());
            *resp.status_mut() = status;
            Ok::<_, Infallible>(resp)
        }
    });
    hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(io), svc)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// POSTs `body` with the extra header lines `head` to a server whose `record` takes every
    /// body but `no`; returns the answer's status line and what was recorded.
    async fn post(head: &str, body: &str, max_body: usize) -> (String, Vec<Received>) {
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        let task = tokio::spawn(serve(server, max_body, move |r: Received| {
            let take = r.body != b"no";
            sink.lock().unwrap().push(r);
            take
        }));
        let request = format!(
            "POST /hook HTTP/1.1\r\nHost: x\r\n{head}content-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        let _ = task.await.unwrap();
        let answer = String::from_utf8(answer).unwrap();
        let status = answer.lines().next().unwrap_or_default().to_string();
        let got = got.lock().unwrap().clone();
        (status, got)
    }

    #[tokio::test]
    async fn a_request_is_recorded_before_its_answer_and_refusals_get_400() {
        let (status, got) = post("X-Flux-Delivery:  d-1 \r\n", "hello", 1024).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("x-flux-delivery"), Some("d-1"));
        assert_eq!(got[0].body, b"hello");
        let (status, got) = post("", "no", 1024).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request");
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_body_over_the_bound_is_answered_413_and_not_recorded() {
        let (status, got) = post("", "hello world", 10).await;
        assert_eq!(status, "HTTP/1.1 413 Payload Too Large");
        assert!(got.is_empty());
        // At the bound, it is taken.
        assert_eq!(post("", "hello worl", 10).await.0, "HTTP/1.1 200 OK");
    }
}
