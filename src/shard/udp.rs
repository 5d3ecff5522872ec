//! The shard's unconnected socket on the DTLS port.
//!
//! With the reuseport program (`sys::reuseport`) it is shared by all of
//! the shard's DTLS channels: its receive is on the shard's ring, a
//! datagram from a client with a channel goes to that channel
//! (`on_datagram`), and a new client's ClientHello starts one. Without
//! the program only a client's first ClientHello (or one after it changed
//! address) arrives here (`listen_loop`); once its home shard has a socket
//! connect()ed to it, the kernel delivers the rest of its datagrams there.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::UdpSocket;
use shards::AppId;

use super::core::Shard;
use super::dtls::DtlsChannel;
use super::tunnel::Tunnel;
use super::ShardMsg;
use crate::proto::dtls;

/// A client's channel on a shared socket, and its tunnel.
pub(crate) type PeerChannel = (Rc<DtlsChannel>, Rc<Tunnel>);

impl Shard {
    /// The shared socket bound to `local`, if channels live on it here.
    pub(crate) fn dtls_socket(&self, local: SocketAddr) -> Option<RawFd> {
        self.dtls_sockets
            .iter()
            .find(|(a, _)| *a == local)
            .map(|(_, fd)| fd.as_raw_fd())
    }

    /// `ch` on a shared socket: its client's datagrams come to it, here
    /// and (through the reuseport program) to this shard.
    pub(crate) fn add_dtls_peer(&self, ch: &Rc<DtlsChannel>, tunnel: &Rc<Tunnel>) {
        self.dtls_peers
            .borrow_mut()
            .insert(ch.peer, (ch.clone(), tunnel.clone()));
        if let Some(groups) = &self.shared.dtls_steering {
            if let Err(e) = groups.claim(ch.peer, u32::from(self.id.0)) {
                tracing::warn!(peer = %ch.peer, "DTLS steering: {e}");
            }
        }
    }

    /// `ch` ended: its address is forgotten unless a newer channel has it.
    pub(crate) fn remove_dtls_peer(&self, ch: &Rc<DtlsChannel>) {
        let mut peers = self.dtls_peers.borrow_mut();
        if !peers.get(&ch.peer).is_some_and(|(c, _)| Rc::ptr_eq(c, ch)) {
            return;
        }
        peers.remove(&ch.peer);
        if let Some(groups) = &self.shared.dtls_steering {
            if let Err(e) = groups.release(ch.peer, u32::from(self.id.0)) {
                tracing::debug!(peer = %ch.peer, "DTLS steering: {e}");
            }
        }
    }
}

/// A datagram on the shared socket bound to `local`, from `from`.
pub(crate) fn on_datagram(
    shard: &Rc<Shard>,
    now: Instant,
    local: SocketAddr,
    data: &mut [u8],
    from: SocketAddr,
) {
    let found = shard.dtls_peers.borrow().get(&from).cloned();
    match found {
        Some((ch, tunnel)) => {
            let handled = super::guard::contain_now(shard, "DTLS datagram", || {
                ch.on_datagram(shard, &tunnel, now, data)
            });
            if handled.is_err() {
                // The channel ends; the tunnel goes on over CSTP.
                ch.close();
            }
        }
        None => {
            let _ = super::guard::contain_now(shard, "ClientHello", || {
                route_hello(shard, data, from, local)
            });
        }
    }
}

/// Serves the unconnected socket bound to `local`.
pub(crate) async fn listen_loop(shard: Rc<Shard>, sock: UdpSocket, local: SocketAddr) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let (n, from) = match sock.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(shard = %shard.id, "UDP receive: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = super::guard::contain_now(&shard, "ClientHello", || {
            route_hello(&shard, &buf[..n], from, local)
        });
    }
}

/// Sends a ClientHello to the home shard its App-ID names; anything else
/// is noise here and dropped.
pub(crate) fn route_hello(shard: &Rc<Shard>, data: &[u8], from: SocketAddr, local: SocketAddr) {
    let Some(app_id) = dtls::client_hello_session_id(data).and_then(AppId::from_bytes) else {
        return;
    };
    let home = app_id.home_shard();
    if home == shard.id {
        super::dtls::start(shard, app_id, (from, local), data.to_vec());
    } else if !shard.shared.live_app_ids.is_live(home, &app_id) {
        // Forged or stale: not worth a cross-shard message.
        tracing::debug!(%from, to = %home, "ClientHello for an App-ID that shard has not issued or that ended: dropped");
    } else if let Some(inbox) = shard.shared.inboxes.get(home.index()) {
        // Dropped if that shard is stopping or far behind: the client
        // retransmits its hello.
        tracing::debug!(%from, from_shard = %shard.id, to = %home, "ClientHello forwarded to its home shard");
        let _ = inbox.post(ShardMsg::DtlsHello(Box::new(super::DtlsHello {
            app_id,
            from,
            local,
            datagram: data.to_vec(),
        })));
    }
}
