//! The channel against our DTLS client on a virtual clock: first handshake,
//! the client starting over while packets flow, forged and failed restarts,
//! and which channel a hello goes to.

use super::*;
use crate::dtls::DtlsClient;

const PSK: [u8; 32] = [0x42; 32];
const APP_ID: [u8; 32] = [0xA1; 32];

fn client(psk: [u8; 32], app_id: &[u8; 32], now: Instant) -> DtlsClient {
    DtlsClient::new_psk(psk, app_id, &DtlsConfig::default(), now).unwrap()
}

/// The client's pending datagrams.
fn from_client(c: &mut DtlsClient, now: Instant) -> Vec<Vec<u8>> {
    let mut buf = [0u8; 2048];
    std::iter::from_fn(|| c.poll_transmit(now, &mut buf).map(|n| buf[..n].to_vec())).collect()
}

/// Feeds `d` to the channel the way the shard does; the plaintexts.
fn feed(ch: &mut ServerChannel, now: Instant, d: &[u8]) -> Vec<Vec<u8>> {
    let mut d = d.to_vec();
    let mut records = Vec::new();
    if ch.begin_datagram(now, &mut d) == Inbound::Records {
        let mut off = 0;
        while let Some((record, next)) = ch.next_record(now, &mut d[off..]) {
            records.push(record.to_vec());
            off += next;
        }
    }
    records
}

/// The channel's pending datagrams, handed to the client.
fn to_client(ch: &mut ServerChannel, c: &mut DtlsClient, now: Instant) {
    let mut buf = [0u8; 2048];
    while let Some(n) = ch.poll_transmit(now, &mut buf) {
        let mut d = buf[..n].to_vec();
        let _ = c.handle_datagram(now, &mut d);
    }
}

fn events(ch: &mut ServerChannel) -> Vec<ChannelEvent> {
    std::iter::from_fn(|| ch.poll_event()).collect()
}

/// Runs the handshake of `c` with `ch` (already fed nothing) to the end.
fn handshake(ch: &mut ServerChannel, c: &mut DtlsClient, now: Instant) {
    for _ in 0..8 {
        for d in from_client(c, now) {
            feed(ch, now, &d);
        }
        to_client(ch, c, now);
        if c.is_connected() && !ch.is_restarting() && ch.is_active() {
            // The client's Finished may still be on its way.
            for d in from_client(c, now) {
                feed(ch, now, &d);
            }
            return;
        }
    }
    panic!("no handshake");
}

fn data(c: &mut DtlsClient, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; payload.len() + 128];
    let n = c.seal(payload, &mut out).unwrap();
    out.truncate(n);
    out
}

/// A channel started by a fresh client's hello, which it has taken.
fn started(now: Instant) -> (ServerChannel, DtlsClient, Vec<u8>) {
    let mut c = client(PSK, &APP_ID, now);
    let hello = from_client(&mut c, now).remove(0);
    let mut ch = ServerChannel::new(ChannelKey::Psk(PSK), APP_ID, 1400, now, &hello);
    feed(&mut ch, now, &hello);
    (ch, c, hello)
}

/// Runs the channel's timers, sending nothing anywhere, until it has no
/// deadline (at most 100 steps); the last instant.
fn run_timers(ch: &mut ServerChannel, from: Instant) -> Instant {
    let mut t = from;
    for _ in 0..100 {
        let Some(at) = ch.poll_timeout() else { break };
        t = at.max(t);
        ch.handle_timeout(t);
        let mut buf = [0u8; 2048];
        while ch.poll_transmit(t, &mut buf).is_some() {}
    }
    t
}

/// A connected channel and its client.
fn connected(now: Instant) -> (ServerChannel, DtlsClient) {
    let (mut ch, mut c, _) = started(now);
    to_client(&mut ch, &mut c, now);
    handshake(&mut ch, &mut c, now);
    assert!(ch.is_active(), "{:?}", events(&mut ch));
    (ch, c)
}

#[test]
fn first_handshake_connects_and_records_come_out() {
    let now = Instant::now();
    let (mut ch, mut c) = connected(now);
    assert!(matches!(
        events(&mut ch)[..],
        [ChannelEvent::Connected { .. }]
    ));
    let later = now + Duration::from_secs(5);
    assert_eq!(
        feed(&mut ch, later, &data(&mut c, b"\x00packet")),
        [b"\x00packet"]
    );
    assert_eq!(ch.last_rx(), later);
    assert!(ch.suite().is_some());
}

#[test]
fn a_restart_is_served_beside_the_working_session_and_then_takes_over() {
    let now = Instant::now();
    let (mut ch, mut old) = connected(now);
    events(&mut ch);
    // The same client starting over: a new ClientHello, same session.
    let mut new = client(PSK, &APP_ID, now);
    let hello = from_client(&mut new, now).remove(0);
    assert!(feed(&mut ch, now, &hello).is_empty());
    assert_eq!(events(&mut ch), [ChannelEvent::Restarted]);
    assert!(ch.is_restarting() && ch.is_active());
    // Packets still flow on the working keys meanwhile.
    assert_eq!(feed(&mut ch, now, &data(&mut old, b"\x00a")), [b"\x00a"]);
    to_client(&mut ch, &mut new, now);
    handshake(&mut ch, &mut new, now);
    assert!(!ch.is_restarting());
    assert!(matches!(
        events(&mut ch)[..],
        [ChannelEvent::Reconnected { .. }]
    ));
    assert_eq!(feed(&mut ch, now, &data(&mut new, b"\x00b")), [b"\x00b"]);
}

#[test]
fn a_retransmitted_hello_is_not_a_restart() {
    let now = Instant::now();
    let (mut ch, mut c, hello) = started(now);
    feed(&mut ch, now, &hello);
    assert!(!events(&mut ch).contains(&ChannelEvent::Restarted));
    to_client(&mut ch, &mut c, now);
    handshake(&mut ch, &mut c, now);
    assert!(ch.is_active());
}

#[test]
fn a_hello_for_another_session_changes_nothing() {
    let now = Instant::now();
    let (mut ch, mut c) = connected(now);
    events(&mut ch);
    let mut other = client(PSK, &[0xB2; 32], now);
    let hello = from_client(&mut other, now).remove(0);
    assert!(feed(&mut ch, now, &hello).is_empty());
    assert_eq!(events(&mut ch), [ChannelEvent::ForeignHello]);
    assert!(!ch.is_restarting());
    assert_eq!(feed(&mut ch, now, &data(&mut c, b"\x00x")), [b"\x00x"]);
}

#[test]
fn a_failed_restart_leaves_the_working_session_alone() {
    let now = Instant::now();
    let (mut ch, mut c) = connected(now);
    events(&mut ch);
    // Someone who knows the App-ID but not the key.
    let mut forger = client([0x13; 32], &APP_ID, now);
    let hello = from_client(&mut forger, now).remove(0);
    feed(&mut ch, now, &hello);
    to_client(&mut ch, &mut forger, now);
    for d in from_client(&mut forger, now) {
        feed(&mut ch, now, &d);
    }
    assert_eq!(events(&mut ch), [ChannelEvent::Restarted]);
    // Its Finished does not authenticate, so is dropped like any forged
    // record: the restart waits, then gives up; packets flow throughout.
    assert!(ch.is_restarting());
    assert_eq!(feed(&mut ch, now, &data(&mut c, b"\x00y")), [b"\x00y"]);
    let t = run_timers(&mut ch, now);
    assert!(
        !ch.is_restarting() && ch.is_active(),
        "{:?}",
        events(&mut ch)
    );
    assert_eq!(feed(&mut ch, t, &data(&mut c, b"\x00z")), [b"\x00z"]);
}

#[test]
fn a_handshake_that_never_finishes_ends_the_channel() {
    let now = Instant::now();
    let (mut ch, _, _) = started(now);
    let t = run_timers(&mut ch, now);
    assert!(ch.is_closed());
    assert!(events(&mut ch)
        .iter()
        .any(|e| matches!(e, ChannelEvent::Closed { .. })));
    assert!(t.duration_since(now) < Duration::from_secs(120));
}

#[test]
fn a_hello_goes_to_the_channel_of_its_address() {
    let t0 = Instant::now();
    let (a, b, c) = (1, 2, 3);
    let st = |peer: &'static i32, closed, created| ChannelState {
        peer,
        closed,
        created,
    };
    let young = t0 + Duration::from_millis(500);
    let old = t0 + PENDING_REPLACE_AFTER + Duration::from_millis(1);
    // No channel yet.
    assert_eq!(on_hello(t0, &a, None, None), HelloAction::NewChannel);
    // The working channel's address: a retransmission or a restart.
    assert_eq!(
        on_hello(t0, &a, Some(st(&1, false, t0)), None),
        HelloAction::ToChannel(0)
    );
    // The pending channel's address.
    assert_eq!(
        on_hello(young, &b, Some(st(&1, false, t0)), Some(st(&2, false, t0))),
        HelloAction::ToChannel(1)
    );
    // A closed channel's address gets a new one.
    assert_eq!(
        on_hello(t0, &a, Some(st(&1, true, t0)), None),
        HelloAction::NewChannel
    );
    // A third address while a handshake is young: ignored; later it replaces it.
    assert_eq!(
        on_hello(young, &c, Some(st(&1, false, t0)), Some(st(&2, false, t0))),
        HelloAction::Ignore
    );
    assert_eq!(
        on_hello(old, &c, Some(st(&1, false, t0)), Some(st(&2, false, t0))),
        HelloAction::NewChannel
    );
    // A new address with only a working channel: a new channel (it
    // replaces the working one once its handshake is done).
    assert_eq!(
        on_hello(t0, &b, Some(st(&1, false, t0)), None),
        HelloAction::NewChannel
    );
}
