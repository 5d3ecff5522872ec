//! The DTLS port's reuseport program: which shard's socket a datagram is
//! delivered to, so that it reaches the shard that serves its client
//! without a cross-shard message.
//!
//! * A datagram from a client address in the peers map goes to the shard
//!   the map names (a channel's home, entered while the channel lives).
//! * A DTLS ClientHello goes to the shard its session_id names: our
//!   App-ID, whose first two bytes are its home shard (`shards::AppId`).
//! * Anything else, or a shard whose socket is not in the group yet, goes
//!   to the receiving CPU's shard, as plain SO_REUSEPORT would spread it.
//!
//! Each UDP listen address is its own reuseport group and gets its own
//! socket array (slot = shard) and program; the peers map is shared.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::bpf::{
    bpf, create_map, insn, load_program, MapElemAttr, BPF_F_NO_PREALLOC, BPF_MAP_DELETE_ELEM,
    BPF_MAP_UPDATE_ELEM, BPF_PSEUDO_MAP_FD,
};

// linux/bpf.h
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
const BPF_SK_REUSEPORT_SELECT: u32 = 39;
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
// Helper function numbers.
const MAP_LOOKUP_ELEM: i32 = 1;
const GET_SMP_PROCESSOR_ID: i32 = 8;
const SKB_LOAD_BYTES: i32 = 26;
const SKB_LOAD_BYTES_RELATIVE: i32 = 68;
const SK_SELECT_REUSEPORT: i32 = 82;
const BPF_HDR_START_NET: i32 = 1;
/// `sk_reuseport_md.eth_protocol`: the protocol in network byte order.
const MD_ETH_PROTOCOL: i16 = 20;
const ETH_P_IPV6_BE: i32 = u16::from_ne_bytes(0x86dd_u16.to_be_bytes()) as i32;
/// Client addresses with a channel, across all shards.
const MAX_PEERS: u32 = 1 << 20;
/// A peers map key: the address's bytes (IPv4 in the first 4), the UDP
/// source port as it is on the wire, 2 bytes of zero.
const KEY_LEN: usize = 20;
/// The bytes of a ClientHello's payload the program reads: record header
/// (13), handshake header (12), version (2), random (32), session_id's
/// length (1) and the App-ID's first two bytes.
const HELLO_PREFIX: i32 = 62;

/// Jump targets of the program, resolved when it is assembled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    V6,
    Load,
    Hello,
    Select,
    Cpu,
    Pass,
}

/// eBPF with forward jumps to labels.
#[derive(Default)]
struct Asm {
    code: Vec<u64>,
    /// (instruction index, its target)
    jumps: Vec<(usize, Label)>,
    labels: Vec<(Label, usize)>,
}

impl Asm {
    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.code.push(insn(code, dst, src, off, imm));
    }

    /// A conditional (or, with code 0x05, plain) jump to `to`.
    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.jumps.push((self.code.len(), to));
        self.op(code, dst, 0, 0, imm);
    }

    fn label(&mut self, l: Label) {
        self.labels.push((l, self.code.len()));
    }

    /// `dst` = the map `fd` (a two-slot pseudo load).
    fn map(&mut self, dst: u8, fd: i32) {
        self.op(0x18, dst, BPF_PSEUDO_MAP_FD, 0, fd);
        self.code.push(0);
    }

    fn finish(mut self) -> Vec<u64> {
        for &(at, to) in &self.jumps {
            let target = self
                .labels
                .iter()
                .find(|(l, _)| *l == to)
                .map_or(at + 1, |&(_, i)| i);
            let off = (target - at - 1) as u64 & 0xffff;
            self.code[at] = (self.code[at] & !(0xffff << 16)) | (off << 16);
        }
        self.code
    }
}

/// The program for `shards` shards, selecting from `sockets` (slot =
/// shard) after looking the sender up in `peers`.
fn program(shards: u32, sockets: i32, peers: i32) -> Vec<u64> {
    use Label::*;
    let mut a = Asm::default();
    // r6 = ctx; the key at fp-24 (20 bytes), the chosen slot at fp-28,
    // the ClientHello's first bytes at fp-96.
    a.op(0xbf, 6, 1, 0, 0);
    for off in [-24, -16, -8] {
        a.op(0x7a, 10, 0, off, 0); // *(u64 *)(fp + off) = 0
    }
    a.op(0x61, 7, 6, MD_ETH_PROTOCOL, 0); // r7 = eth_protocol
    a.op(0xbf, 1, 6, 0, 0);
    a.op(0xbf, 3, 10, 0, 0);
    a.op(0x07, 3, 0, 0, -24); // r3 = the key
    a.op(0xb7, 5, 0, 0, BPF_HDR_START_NET);
    a.jump(0x15, 7, ETH_P_IPV6_BE, V6);
    a.op(0xb7, 2, 0, 0, 12); // IPv4 saddr
    a.op(0xb7, 4, 0, 0, 4);
    a.jump(0x05, 0, 0, Load);
    a.label(V6);
    a.op(0xb7, 2, 0, 0, 8); // IPv6 saddr
    a.op(0xb7, 4, 0, 0, 16);
    a.label(Load);
    a.op(0x85, 0, 0, 0, SKB_LOAD_BYTES_RELATIVE);
    a.jump(0x55, 0, 0, Cpu);
    // The UDP source port: the program's data starts at the UDP header.
    a.op(0xbf, 1, 6, 0, 0);
    a.op(0xb7, 2, 0, 0, 0);
    a.op(0xbf, 3, 10, 0, 0);
    a.op(0x07, 3, 0, 0, -8);
    a.op(0xb7, 4, 0, 0, 2);
    a.op(0x85, 0, 0, 0, SKB_LOAD_BYTES);
    a.jump(0x55, 0, 0, Cpu);
    a.map(1, peers);
    a.op(0xbf, 2, 10, 0, 0);
    a.op(0x07, 2, 0, 0, -24);
    a.op(0x85, 0, 0, 0, MAP_LOOKUP_ELEM);
    a.jump(0x15, 0, 0, Hello);
    a.op(0x61, 1, 0, 0, 0); // r1 = the peer's shard
    a.op(0x63, 10, 1, -28, 0);
    a.jump(0x05, 0, 0, Select);
    a.label(Hello);
    a.op(0xbf, 1, 6, 0, 0);
    a.op(0xb7, 2, 0, 0, 8); // the UDP payload
    a.op(0xbf, 3, 10, 0, 0);
    a.op(0x07, 3, 0, 0, -96);
    a.op(0xb7, 4, 0, 0, HELLO_PREFIX);
    a.op(0x85, 0, 0, 0, SKB_LOAD_BYTES);
    a.jump(0x55, 0, 0, Cpu);
    // Handshake record, ClientHello, a 32-byte session_id.
    for (at, want) in [(0i16, 22), (13, 1), (59, 32)] {
        a.op(0x71, 1, 10, -96 + at, 0); // r1 = *(u8 *)(fp - 96 + at)
        a.jump(0x55, 1, want, Cpu);
    }
    a.op(0x71, 1, 10, -96 + 60, 0);
    a.op(0x67, 1, 0, 0, 8); // r1 <<= 8
    a.op(0x71, 2, 10, -96 + 61, 0);
    a.op(0x4f, 1, 2, 0, 0); // r1 |= r2: the App-ID's home shard
    a.op(0x63, 10, 1, -28, 0);
    // Selects the socket in the slot at fp-28; on success to Pass.
    let select = |a: &mut Asm| {
        a.op(0xbf, 1, 6, 0, 0);
        a.map(2, sockets);
        a.op(0xbf, 3, 10, 0, 0);
        a.op(0x07, 3, 0, 0, -28);
        a.op(0xb7, 4, 0, 0, 0);
        a.op(0x85, 0, 0, 0, SK_SELECT_REUSEPORT);
        a.jump(0x15, 0, 0, Pass);
    };
    a.label(Select);
    select(&mut a);
    a.label(Cpu);
    a.op(0x85, 0, 0, 0, GET_SMP_PROCESSOR_ID);
    a.op(0x97, 0, 0, 0, shards.max(1) as i32); // r0 %= shards
    a.op(0x63, 10, 0, -28, 0);
    select(&mut a);
    // No shard's socket there (starting or stopping): drop rather than
    // let the kernel pick a client's connected socket by hash.
    a.op(0xb7, 0, 0, 0, 0); // SK_DROP
    a.op(0x95, 0, 0, 0, 0);
    a.label(Pass);
    a.op(0xb7, 0, 0, 0, 1); // SK_PASS
    a.op(0x95, 0, 0, 0, 0);
    a.finish()
}

/// Where DTLS datagrams go, for one UDP listen address.
pub struct DtlsSteering {
    prog: OwnedFd,
    sockets: OwnedFd,
}

impl DtlsSteering {
    /// Loads the program for `shards` shards and client addresses in `peers`.
    pub fn new(shards: u32, peers: &DtlsPeers) -> io::Result<Self> {
        let sockets = create_map(BPF_MAP_TYPE_REUSEPORT_SOCKARRAY, 4, 8, shards.max(1), 0)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("creating the DTLS socket array: {e}"))
            })?;
        let code = program(shards, sockets.as_raw_fd(), peers.map.as_raw_fd());
        let prog = load_program(BPF_PROG_TYPE_SK_REUSEPORT, BPF_SK_REUSEPORT_SELECT, &code)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("loading the DTLS steering program: {e}"))
            })?;
        Ok(Self { prog, sockets })
    }

    /// Puts shard `shard`'s bound socket in its slot and makes the program
    /// choose for the socket's reuseport group.
    pub fn add(&self, shard: u32, sock: BorrowedFd<'_>) -> io::Result<()> {
        let fd = u64::try_from(sock.as_raw_fd()).map_err(|_| io::ErrorKind::InvalidInput)?;
        let attr = MapElemAttr {
            map_fd: self.sockets.as_raw_fd() as u32,
            key: (&raw const shard) as u64,
            value: (&raw const fd) as u64,
            ..Default::default()
        };
        bpf(
            BPF_MAP_UPDATE_ELEM,
            (&raw const attr).cast(),
            size_of::<MapElemAttr>(),
        )
        .map_err(|e| io::Error::new(e.kind(), format!("DTLS socket array slot {shard}: {e}")))?;
        let prog: libc::c_int = self.prog.as_raw_fd();
        // SAFETY: SO_ATTACH_REUSEPORT_EBPF reads an int (the program fd)
        // from `prog`, alive for the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                (&raw const prog).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = io::Error::last_os_error();
            return Err(io::Error::new(
                e.kind(),
                format!("SO_ATTACH_REUSEPORT_EBPF: {e}"),
            ));
        }
        Ok(())
    }
}

/// Client addresses and the shard serving each, for every listen address.
pub struct DtlsPeers {
    map: OwnedFd,
}

impl DtlsPeers {
    pub fn new() -> io::Result<Self> {
        let map = create_map(
            BPF_MAP_TYPE_HASH,
            KEY_LEN as u32,
            4,
            MAX_PEERS,
            BPF_F_NO_PREALLOC,
        )
        .map_err(|e| io::Error::new(e.kind(), format!("creating the DTLS peers map: {e}")))?;
        Ok(Self { map })
    }

    /// Datagrams from `peer` go to shard `shard` from now on.
    pub fn insert(&self, peer: SocketAddr, shard: u32) -> io::Result<()> {
        self.elem(BPF_MAP_UPDATE_ELEM, peer, (&raw const shard) as u64)
    }

    /// `peer` follows the default rule again.
    pub fn remove(&self, peer: SocketAddr) -> io::Result<()> {
        self.elem(BPF_MAP_DELETE_ELEM, peer, 0)
    }

    fn elem(&self, cmd: libc::c_long, peer: SocketAddr, value: u64) -> io::Result<()> {
        let key = peer_key(peer);
        let attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: key.as_ptr() as u64,
            value,
            ..Default::default()
        };
        bpf(cmd, (&raw const attr).cast(), size_of::<MapElemAttr>()).map(drop)
    }
}

/// The steering of every UDP listen address, with the peers map they share.
pub struct DtlsGroups {
    peers: DtlsPeers,
    /// Which shard each mapped client address belongs to, so that a shard
    /// ends only its own entry: a client may have moved to a channel on
    /// another shard meanwhile. Taken when a channel starts and ends.
    owners: std::sync::Mutex<std::collections::HashMap<SocketAddr, u32>>,
    groups: Vec<(std::net::IpAddr, DtlsSteering)>,
}

impl DtlsGroups {
    /// One program per address in `listen`, for `shards` shards.
    pub fn new(shards: u32, listen: &[std::net::IpAddr]) -> io::Result<Self> {
        let peers = DtlsPeers::new()?;
        let mut groups = Vec::with_capacity(listen.len());
        for a in listen {
            groups.push((*a, DtlsSteering::new(shards, &peers)?));
        }
        Ok(Self {
            peers,
            owners: std::sync::Mutex::default(),
            groups,
        })
    }

    /// Datagrams from `peer` go to `shard` from now on.
    pub fn claim(&self, peer: SocketAddr, shard: u32) -> io::Result<()> {
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        owners.insert(peer, shard);
        self.peers.insert(peer, shard)
    }

    /// `shard` no longer serves `peer` (unless another shard took it).
    pub fn release(&self, peer: SocketAddr, shard: u32) -> io::Result<()> {
        let mut owners = self
            .owners
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if owners.get(&peer) != Some(&shard) {
            return Ok(());
        }
        owners.remove(&peer);
        self.peers.remove(peer)
    }

    /// The steering of the group listening on `addr`.
    pub fn group(&self, addr: std::net::IpAddr) -> Option<&DtlsSteering> {
        self.groups.iter().find(|(a, _)| *a == addr).map(|(_, s)| s)
    }
}

/// The peers map's key for `peer`, as the program builds it from a packet.
fn peer_key(peer: SocketAddr) -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    match peer {
        SocketAddr::V4(a) => key[..4].copy_from_slice(&a.ip().octets()),
        SocketAddr::V6(a) => key[..16].copy_from_slice(&a.ip().octets()),
    }
    key[16..18].copy_from_slice(&peer.port().to_be_bytes());
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsFd;
    use std::time::Duration;

    /// A ClientHello's first bytes with an App-ID of `shard`.
    fn hello(shard: u16) -> Vec<u8> {
        let mut d = vec![0u8; 60 + 32 + 8];
        d[0] = 22;
        d[13] = 1;
        d[59] = 32;
        d[60..62].copy_from_slice(&shard.to_be_bytes());
        d
    }

    /// Which of `socks` received `payload` (None: none within a while).
    fn receiver(socks: &[UdpSocket], payload: &[u8]) -> Option<usize> {
        let mut buf = [0u8; 256];
        for _ in 0..50 {
            for (i, s) in socks.iter().enumerate() {
                if let Ok(n) = s.recv(&mut buf) {
                    assert_eq!(&buf[..n], payload);
                    return Some(i);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    #[test]
    fn hellos_go_to_their_app_ids_shard_and_known_peers_to_theirs() {
        let peers = DtlsPeers::new().expect("peers map (needs CAP_BPF)");
        let steering = DtlsSteering::new(2, &peers).expect("program");
        let first = crate::sys::net::udp_socket("127.0.0.1:0".parse().unwrap(), None).unwrap();
        let first = UdpSocket::from(first);
        let addr = first.local_addr().unwrap();
        let second = UdpSocket::from(crate::sys::net::udp_socket(addr, None).unwrap());
        steering.add(0, first.as_fd()).unwrap();
        steering.add(1, second.as_fd()).unwrap();
        let socks = [first, second];
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.connect(addr).unwrap();
        for shard in [1u16, 0, 1] {
            let h = hello(shard);
            client.send(&h).unwrap();
            assert_eq!(
                receiver(&socks, &h),
                Some(usize::from(shard)),
                "hello for {shard}"
            );
        }
        let data = b"\x17\xfe\xfd record";
        for shard in [1u32, 0, 1] {
            peers.insert(client.local_addr().unwrap(), shard).unwrap();
            client.send(data).unwrap();
            assert_eq!(
                receiver(&socks, data),
                Some(shard as usize),
                "peer of {shard}"
            );
        }
        peers.remove(client.local_addr().unwrap()).unwrap();
        client.send(data).unwrap();
        assert!(receiver(&socks, data).is_some(), "by CPU");
        // A hello naming a shard that does not exist goes by CPU too.
        let h = hello(7);
        client.send(&h).unwrap();
        assert!(receiver(&socks, &h).is_some());
    }

    #[test]
    fn jumps_land_on_their_labels() {
        let code = program(2, 7, 9);
        let target = |at: usize| at + 1 + ((code[at] >> 16) & 0xffff) as usize;
        // Every conditional jump after the loads goes forward and stays inside.
        for (i, &c) in code.iter().enumerate() {
            let op = (c & 0xff) as u8;
            if matches!(op, 0x05 | 0x15 | 0x55) {
                assert!(target(i) < code.len(), "jump at {i} leaves the program");
            }
        }
        assert_eq!(code[code.len() - 1] & 0xff, 0x95);
        assert_eq!(code[code.len() - 2] >> 32, 1, "ends with SK_PASS");
        let key = peer_key("10.1.2.3:4433".parse().unwrap());
        assert_eq!(&key[..4], &[10, 1, 2, 3]);
        assert_eq!(&key[16..], &[0x11, 0x51, 0, 0]);
    }
}
