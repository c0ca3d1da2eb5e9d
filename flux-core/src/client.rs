//! HTTPS client for the FluxForge API, shared by `fluxctl` and `flux-agent`: trust setup (a CA
//! file, the system roots, or `--insecure`), bearer tokens, several server URLs with failover,
//! and the API's JSON error shape turned into a typed error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Errors of an API call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error status and the API error body.
    #[error("{status}: {message} ({code})")]
    Api {
        status: StatusCode,
        code: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// No server could be reached or the connection failed.
    #[error("cannot reach {url}: {reason}")]
    Transport { url: String, reason: String },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {url}: {reason}")]
    Decode { url: String, reason: String },
    #[error("client configuration: {0}")]
    Config(String),
}

impl ClientError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// How to trust the server.
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// PEM file of the CA to trust (only it).
    pub ca_file: Option<std::path::PathBuf>,
    /// Accept any certificate (like `curl -k`).
    pub insecure: bool,
}

/// An API client bound to one or more servers and a token.
#[derive(Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    servers: std::sync::Arc<[String]>,
    current: AtomicUsize,
    /// The bearer token; an agent replaces it when it renews its credential.
    token: Session,
    session: Session,
}

/// Header in which an agent presents its registration's session secret.
pub const SESSION_HEADER: &str = "X-Flux-Session";

/// Header of a task poll's reply saying that the poll's arrival counted as the agent's
/// heartbeat; its value is the heartbeat interval (ms) the control plane asks for. An idle
/// agent whose polls come at least that often sends no heartbeats; a control plane that
/// does not set it gets heartbeats as before.
pub const POLL_HEARD_HEADER: &str = "x-flux-heartbeat-ms";

/// An agent registration's session secret, sent with every call once set (never printed).
#[derive(Default)]
struct Session(std::sync::Mutex<Option<String>>);

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = self.0.lock().map(|s| s.is_some()).unwrap_or(false);
        f.write_str(if set { "Session(set)" } else { "Session(none)" })
    }
}

/// Builds the HTTP client with the trust options; `timeout` bounds each whole request.
pub fn http_client(
    tls: &TlsOptions,
    timeout: Option<Duration>,
) -> Result<reqwest::Client, ClientError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .https_only(true)
        .user_agent(concat!("fluxforge/", env!("CARGO_PKG_VERSION")));
    if let Some(t) = timeout {
        b = b.timeout(t);
    }
    if let Some(ca) = &tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| {
            ClientError::Config(format!("cannot read CA file {}: {e}", ca.display()))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            ClientError::Config(format!("CA file {} is not PEM: {e}", ca.display()))
        })?;
        if certs.is_empty() {
            return Err(ClientError::Config(format!(
                "CA file {} holds no certificate",
                ca.display()
            )));
        }
        b = b.tls_certs_only(certs);
    }
    if tls.insecure {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|e| ClientError::Config(e.to_string()))
}

impl ApiClient {
    /// `servers` are base URLs such as `https://cp1:8443`; calls go to one and move to the next
    /// when it cannot be reached.
    pub fn new(
        servers: Vec<String>,
        token: Option<String>,
        tls: &TlsOptions,
    ) -> Result<ApiClient, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::Config("no server URL given".into()));
        }
        for s in &servers {
            if !s.starts_with("https://") {
                return Err(ClientError::Config(format!(
                    "server URL {s:?} must start with https:// (fluxd serves TLS only)"
                )));
            }
        }
        Ok(ApiClient {
            http: http_client(tls, None)?,
            servers: servers
                .into_iter()
                .map(|s| s.trim_end_matches('/').to_string())
                .collect(),
            current: AtomicUsize::new(0),
            token: Session(std::sync::Mutex::new(token)),
            session: Session::default(),
        })
    }

    /// Sets the agent session secret sent (header [`SESSION_HEADER`]) with every later call.
    pub fn set_session(&self, secret: Option<String>) {
        *self.session.0.lock().unwrap_or_else(|p| p.into_inner()) = secret;
    }

    /// Replaces the bearer token sent with every later call (an agent's renewed credential).
    pub fn set_token(&self, token: Option<String>) {
        *self.token.0.lock().unwrap_or_else(|p| p.into_inner()) = token;
    }

    /// The bearer token currently sent, if any.
    pub fn token(&self) -> Option<String> {
        self.token
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The agent session secret currently sent, if any.
    pub fn session(&self) -> Option<String> {
        self.session
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// A client for the same servers over the same connection pool, with another token. Many
    /// such clients share the pool's connections (requests are multiplexed over HTTP/2).
    pub fn with_token(&self, token: Option<String>) -> ApiClient {
        ApiClient {
            http: self.http.clone(),
            servers: self.servers.clone(),
            current: AtomicUsize::new(self.current.load(Ordering::Relaxed)),
            token: Session(std::sync::Mutex::new(token)),
            session: Session::default(),
        }
    }

    pub fn server(&self) -> &str {
        &self.servers[self.current.load(Ordering::Relaxed) % self.servers.len()]
    }

    /// Moves to the next server URL (after a transport failure).
    pub fn rotate(&self) {
        self.current.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a request and returns the raw response if its status is a success.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&(dyn erased::Json + Sync)>,
        timeout: Duration,
    ) -> Result<reqwest::Response, ClientError> {
        self.send_with_headers(method, path, body, timeout, &[])
            .await
    }

    /// [`ApiClient::send`] with extra request headers (preconditions such as `If-Match`).
    pub async fn send_with_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&(dyn erased::Json + Sync)>,
        timeout: Duration,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{}", self.server(), path);
        let mut req = self.http.request(method, &url).timeout(timeout);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(t) = self.token() {
            req = req.bearer_auth(t);
        }
        if let Some(s) = self.session() {
            req = req.header(SESSION_HEADER, s);
        }
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(b.to_json());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.rotate();
                return Err(ClientError::Transport {
                    url,
                    reason: error_chain(&e),
                });
            }
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let text = resp.text().await.unwrap_or_default();
        let (code, message) = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => (
                v["error"]["code"].as_str().unwrap_or("unknown").to_string(),
                v["error"]["message"].as_str().unwrap_or(&text).to_string(),
            ),
            Err(_) => ("unknown".to_string(), text.chars().take(500).collect()),
        };
        Err(ClientError::Api {
            status,
            code,
            message,
            retry_after,
        })
    }

    /// Sends a request and decodes a JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(dyn erased::Json + Sync)>,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        Ok(self.call_headers(method, path, body, timeout).await?.0)
    }

    /// [`ApiClient::call`], also returning the reply's headers.
    pub async fn call_headers<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(dyn erased::Json + Sync)>,
        timeout: Duration,
    ) -> Result<(T, reqwest::header::HeaderMap), ClientError> {
        let url = format!("{}{}", self.server(), path);
        let resp = self.send(method, path, body, timeout).await?;
        let headers = resp.headers().clone();
        // A reply's body may come long after its headers (a task poll waits in it): a server
        // lost meanwhile is left for the next one, as a failed send is.
        let bytes = resp.bytes().await.map_err(|e| {
            self.rotate();
            ClientError::Transport {
                url: url.clone(),
                reason: error_chain(&e),
            }
        })?;
        let value = serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url,
            reason: e.to_string(),
        })?;
        Ok((value, headers))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None, Duration::from_secs(30))
            .await
    }

    pub async fn post<T: DeserializeOwned, B: Serialize + Sync>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(
            Method::POST,
            path,
            Some(&erased::Body(body)),
            Duration::from_secs(30),
        )
        .await
    }
}

/// The full cause chain of an error, on one line (reqwest hides the interesting part).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

/// Object-safe JSON bodies.
pub mod erased {
    use serde::Serialize;

    pub trait Json {
        fn to_json(&self) -> Vec<u8>;
    }

    /// Wraps any serializable value.
    pub struct Body<'a, T: Serialize>(pub &'a T);

    impl<T: Serialize> Json for Body<'_, T> {
        fn to_json(&self) -> Vec<u8> {
            serde_json::to_vec(self.0).expect("request bodies serialize")
        }
    }

    /// A body that is already encoded (JSON lines such as a backup).
    pub struct Raw(pub Vec<u8>);

    impl Json for Raw {
        fn to_json(&self) -> Vec<u8> {
            self.0.clone()
        }
    }
}

/// Exponential backoff with full jitter: a random delay in `[0, min(cap, base * 2^attempt)]`.
pub fn backoff(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exp.min(cap);
    let ms = ceiling.as_millis() as u64;
    Duration::from_millis(if ms == 0 {
        0
    } else {
        rand::random_range(0..=ms)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_its_exponential_ceiling() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(5);
        for attempt in 0..20 {
            let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
            for _ in 0..50 {
                assert!(backoff(attempt, base, cap) <= ceiling);
            }
        }
        // Full jitter: delays spread over the range instead of clustering at the ceiling.
        let samples: Vec<Duration> = (0..200).map(|_| backoff(10, base, cap)).collect();
        assert!(samples.iter().any(|d| *d < cap / 2));
        assert!(samples.iter().any(|d| *d > cap / 2));
    }

    #[test]
    fn plain_http_urls_are_refused() {
        let err = ApiClient::new(
            vec!["http://localhost:8443".into()],
            None,
            &TlsOptions::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("https://"));
    }
}
