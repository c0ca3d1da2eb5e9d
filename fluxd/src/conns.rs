//! Connection caps: at most so many open connections per node and per client address. A
//! connection over either cap is closed as soon as it is accepted, before the TLS handshake,
//! so that one client cannot hold every descriptor of the node (slowloris) and others still
//! get in. [`ConnCaps::admit`] is the policy; [`CapAcceptor`] applies it to accepted sockets.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use futures::future::BoxFuture;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::idle::{Activity, Tracked, Watch};

/// The caps of a node (`--max-connections`, `--max-connections-per-ip`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnLimits {
    pub total: usize,
    pub per_ip: usize,
}

/// Why a connection was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the node holds its limit of {0} connections")]
    Total(usize),
    #[error("{ip} holds its limit of {limit} connections")]
    PerIp { ip: IpAddr, limit: usize },
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_ip: HashMap<IpAddr, usize>,
}

/// Open connections, overall and by client address.
pub struct ConnCaps {
    limits: ConnLimits,
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it frees its place.
pub struct Slot {
    caps: Arc<ConnCaps>,
    ip: IpAddr,
}

impl ConnCaps {
    pub fn new(limits: ConnLimits) -> Arc<ConnCaps> {
        Arc::new(ConnCaps {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Takes a place for a connection from `ip`, unless that would pass a cap. IPv6 clients
    /// are counted by their /64 (one host is usually given a whole /64).
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refused> {
        let ip = client_key(ip);
        let mut c = self.counts.lock().expect("connection counts");
        if c.total >= self.limits.total {
            return Err(Refused::Total(self.limits.total));
        }
        let n = c.by_ip.get(&ip).copied().unwrap_or(0);
        if n >= self.limits.per_ip {
            return Err(Refused::PerIp {
                ip,
                limit: self.limits.per_ip,
            });
        }
        c.total += 1;
        c.by_ip.insert(ip, n + 1);
        Ok(Slot {
            caps: self.clone(),
            ip,
        })
    }

    /// Open connections (overall, from `ip`).
    #[cfg(test)]
    fn open(&self, ip: IpAddr) -> (usize, usize) {
        let c = self.counts.lock().expect("connection counts");
        (c.total, c.by_ip.get(&ip).copied().unwrap_or(0))
    }
}

/// The address a connection is counted under: IPv4 as is (IPv4-mapped IPv6 too), IPv6 by its
/// /64 network.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !((1u128 << 64) - 1),
            )),
        },
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.caps.counts.lock().expect("connection counts");
        c.total -= 1;
        if let Some(n) = c.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.by_ip.remove(&self.ip);
            }
        }
    }
}

/// A stream that holds its connection's [`Slot`] while it is open, and ends (EOF) once the
/// connection has been idle for the node's idle timeout ([`crate::idle`]).
pub struct Counted<T> {
    inner: T,
    _slot: Slot,
    idle: Watch,
}

impl<T: AsyncRead + Unpin> AsyncRead for Counted<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.idle.expired(cx) {
            tracing::debug!("idle connection closed");
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Counted<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// An acceptor that admits a socket through [`ConnCaps`] before handing it to `inner`; a
/// refused socket is dropped (closed) at once. An admitted one is closed once idle for
/// `idle_timeout`.
#[derive(Clone)]
pub struct CapAcceptor<A> {
    inner: A,
    caps: Arc<ConnCaps>,
    idle_timeout: Duration,
}

impl<A> CapAcceptor<A> {
    pub fn new(inner: A, caps: Arc<ConnCaps>, idle_timeout: Duration) -> CapAcceptor<A> {
        CapAcceptor {
            inner,
            caps,
            idle_timeout,
        }
    }
}

impl<A, S> Accept<TcpStream, S> for CapAcceptor<A>
where
    A: Accept<TcpStream, S>,
    A::Future: Send + 'static,
    A::Stream: Send + 'static,
    A::Service: Send + 'static,
{
    type Stream = Counted<A::Stream>;
    type Service = Tracked<A::Service>;
    type Future = BoxFuture<'static, io::Result<(Counted<A::Stream>, Tracked<A::Service>)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let slot = match stream.peer_addr() {
            Ok(peer) => self.caps.admit(peer.ip()),
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let slot = match slot {
            Ok(s) => s,
            Err(refused) => {
                tracing::debug!(%refused, "connection refused");
                return Box::pin(std::future::ready(Err(io::Error::other(refused))));
            }
        };
        let fut = self.inner.accept(stream, service);
        let timeout = self.idle_timeout;
        Box::pin(async move {
            let (inner, service) = fut.await?;
            let activity = Activity::new();
            let idle = Watch::new(activity.clone(), timeout);
            Ok((
                Counted {
                    inner,
                    _slot: slot,
                    idle,
                },
                Tracked::new(service, activity),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_is_capped_while_others_still_get_in() {
        let caps = ConnCaps::new(ConnLimits {
            total: 10,
            per_ip: 2,
        });
        let a = ip("10.0.0.1");
        let held: Vec<Slot> = (0..2).map(|_| caps.admit(a).unwrap()).collect();
        assert_eq!(
            caps.admit(a).err(),
            Some(Refused::PerIp { ip: a, limit: 2 })
        );
        let other = caps.admit(ip("10.0.0.2")).expect("another address gets in");
        assert_eq!(caps.open(a), (3, 2));
        drop(held);
        assert_eq!(caps.open(a), (1, 0));
        caps.admit(a).expect("a freed place is usable again");
        drop(other);
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let caps = ConnCaps::new(ConnLimits {
            total: 10,
            per_ip: 2,
        });
        let _a = caps.admit(ip("2001:db8:1:2::1")).unwrap();
        let _b = caps.admit(ip("2001:db8:1:2:ffff::9")).unwrap();
        assert!(
            matches!(
                caps.admit(ip("2001:db8:1:2::77")),
                Err(Refused::PerIp { .. })
            ),
            "a third address of the same /64 is over the cap"
        );
        let _c = caps
            .admit(ip("2001:db8:1:3::1"))
            .expect("another /64 gets in");
        let _d = caps.admit(ip("10.0.0.7")).unwrap();
        let _e = caps.admit(ip("::ffff:10.0.0.7")).unwrap();
        assert!(
            matches!(caps.admit(ip("10.0.0.7")), Err(Refused::PerIp { .. })),
            "an IPv4-mapped address counts as its IPv4 address"
        );
    }

    #[test]
    fn the_node_wide_cap_holds_across_addresses() {
        let caps = ConnCaps::new(ConnLimits {
            total: 3,
            per_ip: 2,
        });
        let _a = [
            caps.admit(ip("10.0.0.1")).unwrap(),
            caps.admit(ip("10.0.0.1")).unwrap(),
        ];
        let b = caps.admit(ip("10.0.0.2")).unwrap();
        assert_eq!(caps.admit(ip("10.0.0.3")).err(), Some(Refused::Total(3)));
        drop(b);
        assert!(caps.admit(ip("10.0.0.3")).is_ok());
    }
}
