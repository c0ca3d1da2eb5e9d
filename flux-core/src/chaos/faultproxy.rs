//! A TCP proxy on loopback that injects network faults between a client and a server. It can
//! drop every connection through it and close new ones at once (a partition), or hold every
//! byte in flight without closing anything and deliver it all later (a frozen network: what was
//! sent during the freeze arrives late, after the sender may have given up on it). Chaos runs
//! put one between each `fluxd` and Redis; tests put one between an agent and a server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// A fault-injecting TCP forwarder on loopback.
pub struct FaultProxy {
    pub port: u16,
    cut: Arc<AtomicBool>,
    frozen: watch::Sender<bool>,
    conns: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Copies `from` to `to`, holding each chunk read while the network is frozen.
async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if frozen.wait_for(|f| !*f).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl FaultProxy {
    /// Forwards `127.0.0.1:<port>` (a free port) to `127.0.0.1:<target>`.
    pub async fn start(target: u16) -> std::io::Result<FaultProxy> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let (frozen, _) = watch::channel(false);
        let conns = Arc::new(Mutex::new(Vec::<tokio::task::AbortHandle>::new()));
        let (c, k, fz) = (cut.clone(), conns.clone(), frozen.clone());
        let task = tokio::spawn(async move {
            loop {
                let inbound = match listener.accept().await {
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
                let (up, down) = (fz.subscribe(), fz.subscribe());
                let h = tokio::spawn(async move {
                    if let Ok(out) = tokio::net::TcpStream::connect(("127.0.0.1", target)).await {
                        let _ = inbound.set_nodelay(true);
                        let _ = out.set_nodelay(true);
                        let (ir, iw) = inbound.into_split();
                        let (or, ow) = out.into_split();
                        tokio::join!(forward(ir, ow, up), forward(or, iw, down));
                    }
                });
                open.retain(|h| !h.is_finished());
                open.push(h.abort_handle());
            }
        });
        Ok(FaultProxy {
            port,
            cut,
            frozen,
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

    /// Holds every byte in flight, both ways, on every connection (new ones included) until
    /// [`FaultProxy::heal`]; nothing is closed.
    pub fn freeze(&self) {
        self.frozen.send_replace(true);
    }

    /// Lets connections through again; what a freeze held is delivered now.
    pub fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
        self.frozen.send_replace(false);
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An echo server on loopback; returns its port.
    async fn echo() -> u16 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.into_split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        port
    }

    /// A proxy in front of an echo server, and a connection through it.
    async fn proxied_echo() -> (FaultProxy, tokio::net::TcpStream) {
        let p = FaultProxy::start(echo().await).await.unwrap();
        let s = connect(&p).await;
        (p, s)
    }

    /// A connection to the proxy.
    async fn connect(p: &FaultProxy) -> tokio::net::TcpStream {
        tokio::net::TcpStream::connect(("127.0.0.1", p.port))
            .await
            .unwrap()
    }

    async fn roundtrip(s: &mut tokio::net::TcpStream, msg: &[u8]) -> Vec<u8> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got).await.unwrap();
        got
    }

    #[tokio::test]
    async fn a_frozen_proxy_holds_bytes_and_delivers_them_on_heal() {
        let (p, mut s) = proxied_echo().await;
        assert_eq!(roundtrip(&mut s, b"before").await, b"before");
        p.freeze();
        s.write_all(b"held").await.unwrap();
        let mut got = [0u8; 4];
        // Nothing comes back while frozen, and the connection stays open.
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got))
                .await
                .is_err()
        );
        p.heal();
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .expect("delivered after the heal")
            .unwrap();
        assert_eq!(&got, b"held");
    }

    #[tokio::test]
    async fn a_cut_drops_open_connections_and_closes_new_ones_until_healed() {
        let (p, mut s) = proxied_echo().await;
        assert_eq!(roundtrip(&mut s, b"x").await, b"x");
        p.cut();
        assert!(p.is_cut());
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .expect("the cut closes the connection");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        let mut n = connect(&p).await;
        let _ = n.write_all(b"y").await;
        let r = tokio::time::timeout(Duration::from_secs(5), n.read(&mut b))
            .await
            .expect("a new connection is closed");
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        p.heal();
        let mut s = connect(&p).await;
        assert_eq!(roundtrip(&mut s, b"z").await, b"z");
    }
}
