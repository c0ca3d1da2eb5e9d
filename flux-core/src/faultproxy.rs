//! A TCP proxy on loopback that injects network faults: it can drop every connection through it
//! and close new ones at once (a partition), then heal. Chaos runs put one between each `fluxd` and
//! Redis; tests put one between an agent and a server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// A fault-injecting TCP forwarder on loopback.
pub struct FaultProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Forwards `127.0.0.1:<port>` (a free port) to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(Mutex::new(Vec::<tokio::task::AbortHandle>::new()));
        let (c, k) = (cut.clone(), conns.clone());
        let task = tokio::spawn(async move {
            loop {
                let mut inbound = match listener.accept().await {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // Out of descriptors, say: not a partition; try again shortly.
                        tracing::warn!(error = %e, "fault proxy: accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // The flag is read and the connection registered under the lock `cut` takes,
                // so a connection is either refused or aborted by the cut, never missed.
                let mut open = k.lock().unwrap_or_else(|p| p.into_inner());
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let h = tokio::spawn(async move {
                    if let Ok(mut out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
                open.retain(|h| !h.is_finished());
                open.push(h.abort_handle());
            }
        });
        Ok(FaultProxy {
            port,
            cut,
            conns,
            task,
        })
    }

    /// The proxy as an HTTPS URL (for a `fluxd` behind it).
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection, and closes new ones as soon as they are accepted.
    pub fn cut(&self) {
        let mut open = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        self.cut.store(true, Ordering::SeqCst);
        for h in open.drain(..) {
            h.abort();
        }
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the proxy is cutting connections.
    pub fn is_cut(&self) -> bool {
        self.cut.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cut();
        self.task.abort();
    }
}
