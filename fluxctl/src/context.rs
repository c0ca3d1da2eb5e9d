//! Where a command's connection comes from: the global flags and `FLUX_*` variables first,
//! then the context named in the config file ([`crate::config`]), then the defaults. Only
//! [`Ctx::client`] reads the token file and the CA, so commands that never talk to a server
//! (`config`, `completions`, `backup verify`, `chaos`) never need them.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use flux_core::client::{ApiClient, TlsOptions};

use crate::cli::Cli;
use crate::config;
use crate::output::Output;

/// The global flags a command runs with.
pub struct Ctx {
    server: Option<String>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    ca: Option<PathBuf>,
    insecure: bool,
    context: Option<String>,
    config: Option<PathBuf>,
    /// How results are printed.
    pub out: Output,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Ctx {
        Ctx {
            server: cli.server.clone(),
            token: cli.token.clone(),
            token_file: cli.token_file.clone(),
            ca: cli.ca.clone(),
            insecure: cli.insecure,
            context: cli.context.clone(),
            config: cli.config.clone(),
            out: cli.output,
        }
    }

    pub fn config_path(&self) -> PathBuf {
        self.config.clone().unwrap_or_else(config::default_path)
    }

    /// A client for the control plane: flags over the context over `https://localhost:8443`.
    pub fn client(&self) -> Result<ApiClient> {
        let cfg = config::Config::load(&self.config_path())?;
        let ctx = cfg
            .context(self.context.as_deref())?
            .map(|(_, c)| c.clone());
        let server = self
            .server
            .clone()
            .or_else(|| ctx.as_ref().map(|c| c.server.clone()))
            .unwrap_or_else(|| "https://localhost:8443".to_string());
        let token_file = self
            .token_file
            .clone()
            .or_else(|| ctx.as_ref().and_then(|c| c.token_file.clone()));
        let token = match (&self.token, token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(
                std::fs::read_to_string(&f)
                    .with_context(|| format!("reading token file {}", f.display()))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        let tls = TlsOptions {
            ca_file: self
                .ca
                .clone()
                .or_else(|| ctx.as_ref().and_then(|c| c.ca.clone())),
            insecure: self.insecure || ctx.as_ref().is_some_and(|c| c.insecure),
        };
        Ok(ApiClient::new(
            server.split(',').map(str::to_string).collect(),
            token,
            &tls,
        )?)
    }
}
