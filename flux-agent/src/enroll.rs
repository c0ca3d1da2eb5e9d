//! The agent's own credential: enrolling once with an enrollment token (`--enroll-token-file`)
//! for an agent token bound to its node id, kept in `--state-dir` (file mode 0600, directory
//! 0700) so that a restarted agent uses it instead of enrolling again, and renewed by the agent
//! itself over its normal connection once two thirds of its lifetime have passed.
//!
//! A renewal that fails (the control plane restarting or failing over) is retried with
//! backoff until the credential expires; every node shares the signing key, so any node
//! renews it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use flux_core::client::{ApiClient, ClientError, TlsOptions, backoff};
use reqwest::Method;
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::agent::Agent;

/// The credential's file in the state directory.
/// (A dot file: the state directory's other files are running attempts' process groups.)
pub const CREDENTIAL_FILE: &str = ".credential";

#[derive(Deserialize)]
struct CredentialReply {
    token: String,
}

/// The credential kept in `dir`, if there is one.
pub fn load_credential(dir: &Path) -> Option<String> {
    let s = std::fs::read_to_string(dir.join(CREDENTIAL_FILE)).ok()?;
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Keeps `token` in `dir`, readable by the agent's user only, replacing the old one in one
/// step (a crash leaves the old credential or the new one).
pub fn save_credential(dir: &Path, token: &str) -> std::io::Result<()> {
    flux_core::files::replace_private(&dir.join(CREDENTIAL_FILE), token.as_bytes())
}

/// The node id to enroll as: the one given, or the host name.
pub fn node_id(given: Option<&str>) -> Result<String> {
    if let Some(n) = given {
        return Ok(n.to_string());
    }
    let h = nix::unistd::gethostname().context("reading the host name for the node id")?;
    let h = h.to_string_lossy();
    let short = h.split('.').next().unwrap_or_default();
    if short.is_empty() {
        bail!("the host name is empty; give --node-id");
    }
    Ok(short.to_string())
}

/// Exchanges the enrollment token in `token_file` for this agent's credential and keeps it in
/// `dir`. Retries transport failures and 429/5xx; a refusal (expired, used up, revoked) ends
/// it with the control plane's message.
pub async fn enroll(
    servers: &[String],
    tls: &TlsOptions,
    token_file: &Path,
    node_id: &str,
    dir: &Path,
    stop: &CancellationToken,
) -> Result<String> {
    crate::harden::warn_if_shared(token_file);
    let enroll_token = std::fs::read_to_string(token_file)
        .with_context(|| format!("reading enrollment token file {}", token_file.display()))?
        .trim()
        .to_string();
    let api = ApiClient::new(servers.to_vec(), Some(enroll_token), tls)?;
    let body = json!({ "node_id": node_id });
    let reply: CredentialReply =
        crate::agent::with_retry(stop, "enrollment", || api.post("/v1/enroll", &body))
            .await
            .map_err(|e| match e {
                ClientError::Api { .. } => anyhow::anyhow!("enrollment refused: {e}"),
                e => anyhow::anyhow!("enrollment failed: {e}"),
            })?;
    save_credential(dir, &reply.token)
        .with_context(|| format!("keeping the credential in {}", dir.display()))?;
    tracing::info!(node_id, dir = %dir.display(), "enrolled; the credential is kept in the state directory");
    Ok(reply.token)
}

/// When a credential issued at `iat` expiring at `exp` (seconds) is renewed: after two thirds
/// of its lifetime. Pure.
pub fn renew_at(iat: u64, exp: u64) -> u64 {
    iat + exp.saturating_sub(iat) * 2 / 3
}

/// Renews the agent's credential before it expires, for as long as the agent runs, keeping
/// each new one in `dir`.
pub async fn renew_loop(agent: Arc<Agent>, dir: PathBuf, stop: CancellationToken) {
    let mut failures = 0u32;
    loop {
        let Some(claims) = agent
            .api
            .token()
            .as_deref()
            .and_then(flux_core::auth::peek_claims)
        else {
            return;
        };
        let now = flux_core::model::now_ms() / 1000;
        let wait = if failures == 0 {
            Duration::from_secs(renew_at(claims.iat, claims.exp).saturating_sub(now))
        } else {
            // Retry well before expiry, never slower than a tenth of what is left.
            let left = claims.exp.saturating_sub(now);
            backoff(
                failures,
                Duration::from_millis(500),
                Duration::from_secs(30),
            )
            .min(Duration::from_secs((left / 10).max(1)))
        };
        if crate::retry::stopped_during(&stop, wait).await {
            return;
        }
        let renewed = agent
            .api
            .call::<CredentialReply>(
                Method::POST,
                "/v1/agent/renew",
                None,
                Duration::from_secs(10),
            )
            .await;
        match renewed {
            Ok(r) => {
                failures = 0;
                agent.api.set_token(Some(r.token.clone()));
                if let Err(e) = save_credential(&dir, &r.token) {
                    tracing::error!(error = %e, "cannot keep the renewed credential");
                }
                tracing::info!(node_id = %agent.node_id, "credential renewed");
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "credential renewal failed; retrying");
                if let ClientError::Api { .. } = e {
                    agent.api.rotate();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_after_two_thirds_of_the_lifetime() {
        assert_eq!(renew_at(1000, 1030), 1020);
        assert_eq!(renew_at(0, 86400), 57600);
        assert_eq!(renew_at(10, 5), 10);
    }

    #[test]
    fn the_credential_is_kept_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_credential(dir.path()), None);
        save_credential(dir.path(), "abc").unwrap();
        save_credential(dir.path(), "def").unwrap();
        assert_eq!(load_credential(dir.path()).as_deref(), Some("def"));
        let mode = std::fs::metadata(dir.path().join(CREDENTIAL_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
