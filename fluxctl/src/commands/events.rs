//! `fluxctl events [-f] [--type T,..] [--since ID] [--object ID] [--selector S]`: print the
//! tenant's events, oldest first: what the log holds (after `--since`), or with `-f` the live
//! stream, resumed after the last id received when the connection drops or the server ends it.
//! `-o json` prints one JSON object per line.
//!
//! Guarantees: with `-f`, a reconnect resumes strictly after the last event printed, so nothing
//! still in the log is printed twice or skipped; a position the log no longer holds (410) ends
//! the command with exit 1 and the server's message.

use std::time::Duration;

use anyhow::Result;
use clap::Args as ClapArgs;
use flux_core::events::EventView;
use flux_core::events::sse::Parser;
use futures::StreamExt;
use reqwest::Method;

use crate::context::Ctx;
use crate::error::CliResult;

#[derive(ClapArgs, Debug)]
pub struct Args {
    /// Follow: keep printing events as they happen.
    #[arg(short = 'f', long)]
    follow: bool,
    /// Only these types (comma-separated; `job.*` matches every job event).
    #[arg(long = "type", value_name = "TYPES")]
    types: Option<String>,
    /// Only events after this id (REVISION or REVISION.INDEX).
    #[arg(long)]
    since: Option<String>,
    /// Only events about this object (job id, node id, STATE/NODE).
    #[arg(long)]
    object: Option<String>,
    /// Only events about agents matching this selector.
    #[arg(long)]
    selector: Option<String>,
}

/// Most reconnects of one `-f` in a row without an event between them.
const MAX_RECONNECTS: u32 = 20;

fn query(a: &Args, since: Option<&str>) -> String {
    let mut q = format!("/v1/events?follow={}", a.follow);
    for (k, v) in [
        ("type", a.types.as_deref()),
        ("object", a.object.as_deref()),
        ("selector", a.selector.as_deref()),
        ("since", since),
    ] {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", super::job::urlencoding(v)));
        }
    }
    q
}

fn print(json: bool, data: &str) -> Result<()> {
    if json {
        println!("{data}");
        return Ok(());
    }
    match serde_json::from_str::<EventView>(data) {
        Ok(v) => {
            let mut details = String::new();
            if let serde_json::Value::Object(m) = &v.event.data {
                for (k, val) in m {
                    if !val.is_null() {
                        details.push_str(&format!(" {k}={}", val.to_string().trim_matches('"')));
                    }
                }
            }
            println!(
                "{:<12} {:<18} {:<36} {}{}",
                v.id,
                v.event.kind,
                v.event.object,
                v.event.node_id.as_deref().unwrap_or("-"),
                details
            );
        }
        Err(_) => println!("{data}"),
    }
    Ok(())
}

pub async fn run(ctx: &Ctx, a: Args) -> CliResult {
    let api = ctx.client()?;
    let json = ctx.out.is_json();
    let mut last = a.since.clone();
    let mut reconnects = 0u32;
    loop {
        let resp = api
            .send(
                Method::GET,
                &query(&a, last.as_deref()),
                None,
                Duration::from_secs(30 * 24 * 3600),
            )
            .await?;
        let mut body = resp.bytes_stream();
        let mut parser = Parser::new();
        let mut resume = false;
        'read: while let Some(piece) = body.next().await {
            let Ok(piece) = piece else {
                resume = true;
                break;
            };
            for m in parser.feed(&piece) {
                if m.event == "end" {
                    let reason = serde_json::from_str::<serde_json::Value>(&m.data)
                        .ok()
                        .and_then(|v| v["reason"].as_str().map(str::to_string))
                        .unwrap_or_default();
                    if reason == "gone" || reason == "error" {
                        return Err(anyhow::anyhow!("event stream ended: {}", m.data).into());
                    }
                    eprintln!("event stream ended ({reason}); resuming");
                    resume = true;
                    break 'read;
                }
                print(json, &m.data)?;
                if let Some(id) = m.id {
                    last = Some(id);
                    reconnects = 0;
                }
            }
        }
        if !a.follow {
            return Ok(());
        }
        // A followed stream that closed without saying why is resumed too.
        if !resume {
            eprintln!("event stream closed; resuming");
        }
        reconnects += 1;
        if reconnects > MAX_RECONNECTS {
            return Err(anyhow::anyhow!(
                "the event stream keeps failing; giving up after {MAX_RECONNECTS} reconnects"
            )
            .into());
        }
        tokio::time::sleep(flux_core::client::backoff(
            reconnects,
            Duration::from_millis(200),
            Duration::from_secs(5),
        ))
        .await;
    }
}

/// Follows the event stream for `--watch` listings: [`Watcher::next_batch`] waits for the next
/// events of `types` (resuming after the last one on a dropped connection) and returns them
/// with whatever followed within a short quiet time, so a burst redraws a listing once.
pub struct Watcher {
    api: flux_core::client::ApiClient,
    types: String,
    last: Option<String>,
    body: Option<futures::stream::BoxStream<'static, reqwest::Result<Vec<u8>>>>,
    parser: Parser,
    reconnects: u32,
}

/// Quiet time that ends a batch of events.
const BATCH_QUIET: Duration = Duration::from_millis(200);

impl Watcher {
    /// Starts at the log's newest event (what the listing already shows).
    pub fn new(api: flux_core::client::ApiClient, types: &str) -> Watcher {
        Watcher {
            api,
            types: types.to_string(),
            last: None,
            body: None,
            parser: Parser::new(),
            reconnects: 0,
        }
    }

    /// Opens the stream now (its start is the log's head at this moment).
    pub async fn open(&mut self) -> Result<()> {
        self.connect(None).await
    }

    /// Opens the stream after the event `since` (at the log's head without one).
    async fn connect(&mut self, since: Option<String>) -> Result<()> {
        let mut path = format!(
            "/v1/events?follow=true&type={}",
            super::job::urlencoding(&self.types)
        );
        if let Some(l) = since {
            path.push_str(&format!("&since={l}"));
        }
        let resp = self
            .api
            .send(
                Method::GET,
                &path,
                None,
                Duration::from_secs(30 * 24 * 3600),
            )
            .await?;
        self.body = Some(resp.bytes_stream().map(|r| r.map(|b| b.to_vec())).boxed());
        self.parser = Parser::new();
        Ok(())
    }

    pub async fn next_batch(&mut self) -> Result<Vec<EventView>> {
        let mut out = Vec::new();
        loop {
            if self.body.is_none() {
                self.connect(self.last.clone()).await?;
            }
            let body = self.body.as_mut().expect("opened above");
            let piece = if out.is_empty() {
                body.next().await
            } else {
                match tokio::time::timeout(BATCH_QUIET, body.next()).await {
                    Ok(p) => p,
                    Err(_) => return Ok(out),
                }
            };
            let Some(Ok(piece)) = piece else {
                self.body = None;
                self.reconnects += 1;
                if self.reconnects > MAX_RECONNECTS {
                    anyhow::bail!("the event stream keeps failing");
                }
                tokio::time::sleep(flux_core::client::backoff(
                    self.reconnects,
                    Duration::from_millis(200),
                    Duration::from_secs(5),
                ))
                .await;
                if !out.is_empty() {
                    return Ok(out);
                }
                continue;
            };
            for m in self.parser.feed(&piece) {
                if m.event == "end" {
                    self.body = None;
                    if m.data.contains("\"gone\"") {
                        // Collected past us: start again from the newest.
                        self.last = None;
                    }
                    break;
                }
                if let Ok(v) = serde_json::from_str::<EventView>(&m.data) {
                    self.last = Some(v.id.clone());
                    self.reconnects = 0;
                    out.push(v);
                }
            }
        }
    }
}
