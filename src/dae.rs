//! Disconnect-Requests (RFC 5176) from the RADIUS servers: a thread of its
//! own takes them on `[radius] disconnect_listen`, checks each against the
//! secret of the address it came from, ends the sessions it names (their
//! cookies too, as `occtl disconnect`) and answers ACK or NAK.

use std::net::UdpSocket;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::proto::radius::disconnect::{answer, error_cause, Target};
use crate::proto::radius::{Code, Packet, MAX_PACKET};
use crate::shard::admin::Target as Sessions;
use crate::shard::Shared;

/// Binds the listening socket, before privileges are dropped.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<UdpSocket> {
    let sock = UdpSocket::bind(addr)?;
    // Wakes up now and then to see the server stopping.
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    Ok(sock)
}

/// Serves `sock` until the server stops.
pub fn spawn(sock: UdpSocket, shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("radius-disconnect".into())
        .spawn(move || {
            let mut buf = vec![0u8; MAX_PACKET];
            while !shared.shutdown.load(Ordering::Acquire) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some(reply) = handle(&shared, &buf[..n], from) {
                    let _ = sock.send_to(&reply, from);
                }
            }
        })?;
    Ok(())
}

/// The answer to one datagram; `None` drops it (not from a known server,
/// not signed with its secret, not a request).
fn handle(shared: &Shared, datagram: &[u8], from: std::net::SocketAddr) -> Option<Vec<u8>> {
    let cfg = shared.config.get();
    let radius = cfg.radius.as_ref()?;
    let from_ip = from.ip().to_canonical();
    let secret = radius
        .disconnect_from
        .iter()
        .find(|(ip, _)| *ip == from_ip)
        .map(|(_, s)| s.as_slice());
    let Some(secret) = secret else {
        // Anyone can send these: no log line per datagram to flood.
        tracing::debug!(%from, "Disconnect-Request from an address that is no RADIUS server: dropped");
        return None;
    };
    let packet = Packet::decode(datagram).ok()?;
    if !matches!(packet.code(), Code::DisconnectRequest | Code::CoaRequest) {
        return None;
    }
    if let Err(e) = packet.verify_request(secret, false) {
        tracing::warn!(%from, "Disconnect-Request dropped: {e}");
        return None;
    }
    if packet.code() == Code::CoaRequest {
        return answer(&packet, Some(error_cause::UNSUPPORTED_EXTENSION), secret).ok();
    }
    let Some(target) = Target::of(&packet) else {
        return answer(&packet, Some(error_cause::MISSING_ATTRIBUTE), secret).ok();
    };
    let ended = disconnect(shared, radius, &target);
    tracing::info!(target: "audit", event = "radius-disconnect", %from, session = %target.session_id.as_deref().unwrap_or("-"),
        user = %target.user.as_deref().unwrap_or("-"), ended, "Disconnect-Request");
    let nak = (ended == 0).then_some(error_cause::SESSION_CONTEXT_NOT_FOUND);
    answer(&packet, nak, secret).ok()
}

/// Ends every session the target names; how many.
fn disconnect(shared: &Shared, radius: &crate::auth::radius::Radius, t: &Target) -> usize {
    // The name as the server knows it, without the realm added to it.
    let user = t.user.as_deref().map(|u| {
        let realm = format!("@{}", radius.default_realm);
        match u.strip_suffix(realm.as_str()) {
            Some(bare) if !radius.default_realm.is_empty() => bare.to_owned(),
            _ => u.to_owned(),
        }
    });
    let scope = match (&t.session_id, &user) {
        (Some(sid), _) => Sessions::Sid(sid.clone()),
        (None, Some(u)) => Sessions::User(u.clone()),
        (None, None) => Sessions::All,
    };
    let framed = t.framed_ip.map(|ip| ip.to_string());
    let ids: Vec<u64> = crate::control::infos(shared, scope)
        .into_iter()
        .filter(|s| {
            t.session_id
                .as_ref()
                .is_none_or(|sid| &s.full_session == sid)
        })
        .filter(|s| user.as_ref().is_none_or(|u| &s.user == u))
        .filter(|s| framed.as_ref().is_none_or(|ip| &s.ipv4 == ip))
        .map(|s| s.id)
        .collect();
    ids.into_iter()
        .filter(|id| {
            crate::control::disconnect(shared, Sessions::Id(*id), "a Disconnect-Request").is_ok()
        })
        .count()
}
