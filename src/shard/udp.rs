//! The shard's unconnected socket on the DTLS port. Only a client's first
//! ClientHello (or one after it changed address) arrives here; once its
//! home shard has a socket connect()ed to it, the kernel delivers the rest
//! of its datagrams there.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use glommio::net::UdpSocket;
use shards::AppId;

use super::core::Shard;
use super::ShardMsg;
use crate::proto::dtls;

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
