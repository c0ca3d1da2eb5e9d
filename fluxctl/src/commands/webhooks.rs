//! `fluxctl webhooks create|list|get|delete|test`: manage the tenant's webhooks (admins). `get`
//! shows the recent deliveries with their status; `test` sends a signed test delivery at once.
//!
//! Guarantees: the secret is read from `--secret-file` (never from the command line); when none
//! is given the server generates one and `create` prints it, the only time it is shown.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use flux_core::webhooks::{CreateWebhook, WebhookView};
use reqwest::Method;
use serde_json::Value;

use crate::context::Ctx;
use crate::error::CliResult;
use crate::output::{Render, age, emit, short, table};

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// Create a webhook: matching events are POSTed to URL, signed, at least once.
    Create {
        name: String,
        /// The receiver (https://; http:// only with --allow-http).
        #[arg(long)]
        url: String,
        /// Event types (comma-separated, `job.*` wildcards); default every type.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Only events about agents matching this selector.
        #[arg(long)]
        filter: Option<String>,
        /// File holding the signing secret (default: generated and printed once).
        #[arg(long)]
        secret_file: Option<PathBuf>,
        /// CA certificates (PEM) the receiver's certificate must chain to (`--ca` is the global
        /// flag for the control plane's own CA).
        #[arg(long = "receiver-ca", value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Accept a plain http:// URL.
        #[arg(long)]
        allow_http: bool,
        /// Attempts per event before it is recorded failed (1..=20).
        #[arg(long)]
        max_attempts: Option<u32>,
    },
    /// List the tenant's webhooks.
    List,
    /// Show a webhook and its recent deliveries.
    Get { name: String },
    /// Delete a webhook (its cursor and delivery records with it).
    Delete { name: String },
    /// Send a test delivery now.
    Test { name: String },
}

impl Render for [WebhookView] {
    fn render(&self) -> String {
        let mut t = table(&[
            "NAME",
            "URL",
            "EVENTS",
            "DELIVERED TO",
            "ATTEMPTS",
            "LAST ERROR",
        ]);
        for w in self {
            t.add_row(vec![
                w.name.clone(),
                short(&w.url, 48),
                if w.events.is_empty() {
                    "*".into()
                } else {
                    w.events.join(",")
                },
                w.delivered_to.clone(),
                w.attempts.to_string(),
                short(w.last_error.as_deref().unwrap_or("-"), 40),
            ]);
        }
        format!("{t}\n")
    }
}

impl Render for WebhookView {
    fn render(&self) -> String {
        let mut s = std::slice::from_ref(self).render();
        let mut t = table(&[
            "DELIVERY", "EVENT", "TYPE", "STATUS", "ATTEMPTS", "CODE", "AGE",
        ]);
        for d in &self.deliveries {
            t.add_row(vec![
                d.delivery_id.clone(),
                match (&d.from_event, d.count) {
                    // Collected from the log undelivered: the run and how many it took.
                    (Some(from), Some(n)) => format!("{from}..{} ({n} lost)", d.event_id),
                    _ => d.event_id.clone(),
                },
                d.kind.clone(),
                d.status.clone(),
                d.attempts.to_string(),
                d.response_code.map_or("-".into(), |c| c.to_string()),
                age(d.at),
            ]);
        }
        if !self.deliveries.is_empty() {
            s.push_str(&format!("{t}\n"));
        }
        s
    }
}

struct Shown(Value);

impl serde::Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Shown {
    fn render(&self) -> String {
        let mut s = String::new();
        if let Some(secret) = self.0["secret"].as_str() {
            s.push_str(&format!(
                "webhook {} created; its signing secret (shown only now): {secret}\n",
                self.0["name"].as_str().unwrap_or_default()
            ));
        } else if let Some(ok) = self.0["ok"].as_bool() {
            s.push_str(&format!(
                "test delivery: {} (response {}){}\n",
                if ok { "ok" } else { "FAILED" },
                self.0["response_code"]
                    .as_u64()
                    .map_or("-".into(), |c| c.to_string()),
                self.0["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ));
        } else {
            s.push_str(&format!(
                "webhook {} created\n",
                self.0["name"].as_str().unwrap_or_default()
            ));
        }
        s
    }
}

fn read(path: &PathBuf, what: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {what} {}", path.display()))
}

pub async fn run(ctx: &Ctx, cmd: WebhooksCmd) -> CliResult {
    let api = ctx.client()?;
    let esc = super::job::urlencoding;
    match cmd {
        WebhooksCmd::Create {
            name,
            url,
            events,
            filter,
            secret_file,
            ca_file,
            allow_http,
            max_attempts,
        } => {
            let req = CreateWebhook {
                name,
                url,
                events,
                filter,
                secret: match &secret_file {
                    Some(p) => Some(read(p, "secret file")?.trim().to_string()),
                    None => None,
                },
                ca_pem: match &ca_file {
                    Some(p) => Some(read(p, "CA file")?),
                    None => None,
                },
                allow_http,
                max_attempts,
            };
            let v: Value = api.post("/v1/webhooks", &req).await?;
            emit(ctx.out, &Shown(v))?;
        }
        WebhooksCmd::List => {
            let v: Vec<WebhookView> = api.get("/v1/webhooks").await?;
            emit(ctx.out, v.as_slice())?;
        }
        WebhooksCmd::Get { name } => {
            let v: WebhookView = api.get(&format!("/v1/webhooks/{}", esc(&name))).await?;
            emit(ctx.out, &v)?;
        }
        WebhooksCmd::Delete { name } => {
            api.send(
                Method::DELETE,
                &format!("/v1/webhooks/{}", esc(&name)),
                None,
                Duration::from_secs(30),
            )
            .await?;
            if !ctx.out.is_json() {
                println!("webhook {name} deleted");
            }
        }
        WebhooksCmd::Test { name } => {
            let v: Value = api
                .post(
                    &format!("/v1/webhooks/{}/test", esc(&name)),
                    &serde_json::json!({}),
                )
                .await?;
            let failed = v["ok"] == false;
            emit(ctx.out, &Shown(v))?;
            if failed {
                return Err(anyhow::anyhow!("the test delivery failed").into());
            }
        }
    }
    Ok(())
}
