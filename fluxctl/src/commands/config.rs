//! `fluxctl config set-context|use-context|get-contexts`: edit the contexts file
//! ([`crate::config`]); nothing here talks to a server.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Subcommand;

use crate::config::{Config, Context};
use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, emit, table};

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Create or update a context.
    SetContext {
        name: String,
        #[arg(long = "to-server", value_name = "URL")]
        url: String,
        #[arg(long = "with-token-file", value_name = "FILE")]
        with_token_file: Option<PathBuf>,
        #[arg(long = "with-ca", value_name = "FILE")]
        with_ca: Option<PathBuf>,
        #[arg(long = "allow-insecure")]
        allow_insecure: bool,
    },
    /// Make a context the default.
    UseContext { name: String },
    /// List contexts.
    GetContexts,
}

impl Render for Config {
    fn render(&self) -> String {
        let mut t = table(&["CURRENT", "NAME", "SERVER", "TOKEN FILE", "CA"]);
        for (n, c) in &self.contexts {
            t.add_row(vec![
                if self.current_context.as_deref() == Some(n) {
                    "*".into()
                } else {
                    String::new()
                },
                n.clone(),
                c.server.clone(),
                c.token_file
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                c.ca.as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            ]);
        }
        format!("{t}\n")
    }
}

pub fn run(ctx: &Ctx, cmd: ConfigCmd) -> CliResult {
    let path = ctx.config_path();
    let mut cfg = Config::load(&path)?;
    match cmd {
        ConfigCmd::SetContext {
            name,
            url,
            with_token_file,
            with_ca,
            allow_insecure,
        } => {
            cfg.contexts.insert(
                name.clone(),
                Context {
                    server: url,
                    token_file: with_token_file,
                    ca: with_ca,
                    insecure: allow_insecure,
                },
            );
            if cfg.current_context.is_none() {
                cfg.current_context = Some(name.clone());
            }
            cfg.save(&path)?;
            println!("context {name} saved in {}", path.display());
        }
        ConfigCmd::UseContext { name } => {
            if !cfg.contexts.contains_key(&name) {
                return Err(anyhow!("no context named {name:?}").into());
            }
            cfg.current_context = Some(name.clone());
            cfg.save(&path)?;
            println!("using context {name}");
        }
        ConfigCmd::GetContexts => emit(ctx.out, &cfg)?,
    }
    Ok(())
}
