//! The TUN steering program: picks the queue from the packet's destination
//! so a packet for a lease is read by the shard that owns it (`pool.rs`).
//!
//! IPv4: `queue = daddr % queues`, unless the destination is in a network
//! routed behind a client (`iroute`): an LPM-trie map, filled as sessions
//! come and go, then names the queue of that client's shard. IPv6: the
//! same with a second map, and the last 32 bits of daddr as the default
//! (a lease's IPv6 address ends in its IPv4 one). `BPF_LD|BPF_ABS` loads
//! are big-endian, i.e. the address as a number.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

// linux/if_tun.h
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
// linux/bpf.h
pub(super) const BPF_MAP_CREATE: libc::c_long = 0;
pub(super) const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub(super) const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
pub(super) const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_MAP_TYPE_LPM_TRIE: u32 = 11;
pub(super) const BPF_F_NO_PREALLOC: u32 = 1;
pub(super) const BPF_PSEUDO_MAP_FD: u8 = 1;
/// Networks behind clients, across all sessions.
const MAX_IROUTES: u32 = 65536;

/// One eBPF instruction, encoded as the kernel's `struct bpf_insn`.
pub(super) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64)
        | ((dst as u64) << 8)
        | ((src as u64) << 12)
        | (((off as u16) as u64) << 16)
        | (((imm as u32) as u64) << 32)
}

/// The program for `queues` queues, looking iroutes up in `map_fd` (IPv4)
/// and `map6_fd` (IPv6).
pub fn steering_program(queues: u32, map_fd: i32, map6_fd: i32) -> [u64; 46] {
    let n = queues.max(1) as i32;
    [
        insn(0xbf, 6, 1, 0, 0),    // r6 = r1 (skb, required by LD_ABS)
        insn(0x30, 0, 0, 0, 0),    // r0 = *(u8 *)(skb + 0)
        insn(0x77, 0, 0, 0, 4),    // r0 >>= 4 (IP version)
        insn(0x15, 0, 0, 17, 6),   // if r0 == 6 goto v6
        insn(0x20, 0, 0, 0, 16),   // r0 = be32 at 16 (IPv4 daddr)
        insn(0xbf, 8, 0, 0, 0),    // r8 = r0 (kept across the call)
        insn(0xbf, 7, 0, 0, 0),    // r7 = r0
        insn(0xdc, 7, 0, 0, 32),   // r7 = htobe32(r7): the key's address bytes
        insn(0x63, 10, 7, -4, 0),  // *(u32 *)(fp - 4) = r7
        insn(0x62, 10, 0, -8, 32), // *(u32 *)(fp - 8) = 32 (prefix length)
        insn(0xbf, 2, 10, 0, 0),   // r2 = fp
        insn(0x07, 2, 0, 0, -8),   // r2 -= 8: the LPM key
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map_fd), // r1 = map (two slots)
        0,
        insn(0x85, 0, 0, 0, 1), // call bpf_map_lookup_elem
        insn(0x15, 0, 0, 2, 0), // if r0 == 0 goto modulo
        insn(0x61, 0, 0, 0, 0), // r0 = *(u32 *)r0: the client's shard
        insn(0x95, 0, 0, 0, 0), // exit
        insn(0xbf, 0, 8, 0, 0), // modulo: r0 = r8
        insn(0x97, 0, 0, 0, n), // r0 %= n
        insn(0x95, 0, 0, 0, 0), // exit
        // v6: the key {prefix 128, daddr} at fp - 20, word by word.
        insn(0x20, 0, 0, 0, 24),   // r0 = be32 at 24
        insn(0xdc, 0, 0, 0, 32),   // r0 = htobe32(r0)
        insn(0x63, 10, 0, -16, 0), // *(u32 *)(fp - 16) = r0
        insn(0x20, 0, 0, 0, 28),   // r0 = be32 at 28
        insn(0xdc, 0, 0, 0, 32),
        insn(0x63, 10, 0, -12, 0),
        insn(0x20, 0, 0, 0, 32), // r0 = be32 at 32
        insn(0xdc, 0, 0, 0, 32),
        insn(0x63, 10, 0, -8, 0),
        insn(0x20, 0, 0, 0, 36), // r0 = be32 at 36 (daddr low 32 bits)
        insn(0xbf, 8, 0, 0, 0),  // r8 = r0 (kept across the call)
        insn(0xdc, 0, 0, 0, 32),
        insn(0x63, 10, 0, -4, 0),
        insn(0x62, 10, 0, -20, 128), // *(u32 *)(fp - 20) = 128 (prefix length)
        insn(0xbf, 2, 10, 0, 0),     // r2 = fp
        insn(0x07, 2, 0, 0, -20),    // r2 -= 20: the LPM key
        insn(0x18, 1, BPF_PSEUDO_MAP_FD, 0, map6_fd), // r1 = map6 (two slots)
        0,
        insn(0x85, 0, 0, 0, 1), // call bpf_map_lookup_elem
        insn(0x15, 0, 0, 2, 0), // if r0 == 0 goto modulo6
        insn(0x61, 0, 0, 0, 0), // r0 = *(u32 *)r0: the client's shard
        insn(0x95, 0, 0, 0, 0), // exit
        insn(0xbf, 0, 8, 0, 0), // modulo6: r0 = r8
        insn(0x97, 0, 0, 0, n), // r0 %= n
        insn(0x95, 0, 0, 0, 0), // exit
    ]
}

/// `union bpf_attr` for BPF_MAP_CREATE.
#[repr(C)]
#[derive(Default)]
pub(super) struct MapCreateAttr {
    pub(super) map_type: u32,
    pub(super) key_size: u32,
    pub(super) value_size: u32,
    pub(super) max_entries: u32,
    pub(super) map_flags: u32,
    pub(super) _rest: [u32; 27],
}

/// `union bpf_attr` for BPF_MAP_*_ELEM.
#[repr(C)]
#[derive(Default)]
pub(super) struct MapElemAttr {
    pub(super) map_fd: u32,
    pub(super) _pad: u32,
    pub(super) key: u64,
    pub(super) value: u64,
    pub(super) flags: u64,
}

/// `struct bpf_lpm_trie_key` for IPv4 (N = 4) and IPv6 (N = 16).
#[repr(C)]
struct LpmKey<const N: usize> {
    prefix_len: u32,
    addr: [u8; N],
}

pub(super) fn bpf(
    cmd: libc::c_long,
    attr: *const libc::c_void,
    size: usize,
) -> io::Result<libc::c_long> {
    // SAFETY: every caller passes a live bpf_attr of `size` bytes.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr, size) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to the fields we set.
#[repr(C)]
#[derive(Default)]
pub(super) struct ProgLoadAttr {
    pub(super) prog_type: u32,
    pub(super) insn_cnt: u32,
    pub(super) insns: u64,
    pub(super) license: u64,
    pub(super) log_level: u32,
    pub(super) log_size: u32,
    pub(super) log_buf: u64,
    pub(super) kern_version: u32,
    pub(super) prog_flags: u32,
    pub(super) prog_name: [u8; 16],
    pub(super) prog_ifindex: u32,
    pub(super) expected_attach_type: u32,
    pub(super) _rest: [u64; 9],
}

/// The attached program and its iroute maps.
pub struct Steering {
    _prog: OwnedFd,
    iroutes: OwnedFd,
    iroutes6: OwnedFd,
}

/// An LPM-trie map from networks with `N`-byte addresses to a queue.
fn lpm_map<const N: usize>() -> io::Result<OwnedFd> {
    create_map(
        BPF_MAP_TYPE_LPM_TRIE,
        size_of::<LpmKey<N>>() as u32,
        4,
        MAX_IROUTES,
        BPF_F_NO_PREALLOC,
    )
    .map_err(|e| io::Error::new(e.kind(), format!("creating the iroute map: {e}")))
}

/// A new map (BPF_MAP_CREATE).
pub(super) fn create_map(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
) -> io::Result<OwnedFd> {
    let map_attr = MapCreateAttr {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags,
        ..Default::default()
    };
    let map = bpf(
        BPF_MAP_CREATE,
        (&raw const map_attr).cast(),
        size_of::<MapCreateAttr>(),
    )?;
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(map as i32) })
}

/// Loads a program; the verifier's log is in the error.
pub(super) fn load_program(
    prog_type: u32,
    expected_attach_type: u32,
    insns: &[u64],
) -> io::Result<OwnedFd> {
    let mut log = vec![0u8; 16384];
    let attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        expected_attach_type,
        ..Default::default()
    };
    // attr points to the program, license and log, which outlive the call.
    let fd = bpf(
        BPF_PROG_LOAD,
        (&raw const attr).cast(),
        size_of::<ProgLoadAttr>(),
    )
    .map_err(|e| {
        let msg = String::from_utf8_lossy(&log)
            .trim_end_matches('\0')
            .trim()
            .to_owned();
        io::Error::new(e.kind(), format!("{e} {msg}"))
    })?;
    // SAFETY: the kernel returned a new fd that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Loads the steering program and attaches it to the device (through any
/// of its queues).
pub fn attach_steering(queue_fd: &OwnedFd, queues: u32) -> io::Result<Steering> {
    let iroutes = lpm_map::<4>()?;
    let iroutes6 = lpm_map::<16>()?;
    let prog = steering_program(queues, iroutes.as_raw_fd(), iroutes6.as_raw_fd());
    let prog_fd = load_program(BPF_PROG_TYPE_SOCKET_FILTER, 0, &prog)
        .map_err(|e| io::Error::new(e.kind(), format!("loading the TUN steering program: {e}")))?;
    let raw: libc::c_int = prog_fd.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads an int (the program fd).
    if unsafe { libc::ioctl(queue_fd.as_raw_fd(), TUNSETSTEERINGEBPF, &raw) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETSTEERINGEBPF: {e}")));
    }
    Ok(Steering {
        _prog: prog_fd,
        iroutes,
        iroutes6,
    })
}

fn key4(net: Ipv4Net) -> LpmKey<4> {
    LpmKey {
        prefix_len: u32::from(net.prefix_len()),
        addr: net.network().octets(),
    }
}

fn key6(net: Ipv6Net) -> LpmKey<16> {
    LpmKey {
        prefix_len: u32::from(net.prefix_len()),
        addr: net.network().octets(),
    }
}

impl Steering {
    /// Packets for `net` go to queue `shard` from now on.
    pub fn route(&self, net: IpNet, shard: u32) -> io::Result<()> {
        self.elem(BPF_MAP_UPDATE_ELEM, net, (&raw const shard) as u64)
            .map_err(|e| io::Error::new(e.kind(), format!("steering {net} to queue {shard}: {e}")))
    }

    /// Whether this process may still change the maps: removing an entry
    /// no network has (0.0.0.0/0 is never routed) answers ENOENT if so.
    pub fn can_update(&self) -> io::Result<()> {
        let any = IpNet::V4(Ipv4Net::default());
        match self.elem(BPF_MAP_DELETE_ELEM, any, 0) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other,
        }
    }

    /// `net` follows the default rule again.
    pub fn unroute(&self, net: IpNet) -> io::Result<()> {
        self.elem(BPF_MAP_DELETE_ELEM, net, 0)
            .map_err(|e| io::Error::new(e.kind(), format!("unsteering {net}: {e}")))
    }

    /// Runs `cmd` on `net`'s entry in the map of its family; `value`
    /// points to the u32 queue for an update (it outlives the call).
    fn elem(&self, cmd: libc::c_long, net: IpNet, value: u64) -> io::Result<()> {
        let run = |map: &OwnedFd, key: u64| {
            let attr = MapElemAttr {
                map_fd: map.as_raw_fd() as u32,
                key,
                value,
                ..Default::default()
            };
            bpf(cmd, (&raw const attr).cast(), size_of::<MapElemAttr>()).map(drop)
        };
        match net {
            IpNet::V4(n) => {
                let k = key4(n);
                run(&self.iroutes, (&raw const k) as u64)
            }
            IpNet::V6(n) => {
                let k = key6(n);
                run(&self.iroutes6, (&raw const k) as u64)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_kernel() {
        // r6 = r1 is 0xbf with dst 6, src 1.
        assert_eq!(insn(0xbf, 6, 1, 0, 0), 0x16bf);
        // exit.
        assert_eq!(insn(0x95, 0, 0, 0, 0), 0x95);
        let p = steering_program(3, 7, 9);
        assert_eq!(p[19] >> 32, 3, "modulo by the queue count");
        assert_eq!(p[3] & 0xff, 0x15);
        assert_eq!(
            3 + 1 + ((p[3] >> 16) & 0xffff) as usize,
            21,
            "the jump lands on the v6 block"
        );
        assert_eq!(p[21] >> 32, 24, "v6 starts with daddr's first word");
        assert_eq!(
            (p[12] >> 32, (p[12] >> 12) & 0xf),
            (7, 1),
            "map fd in a pseudo ld_imm64"
        );
        assert_eq!(p[13], 0);
        assert_eq!((p[37] >> 32, (p[37] >> 12) & 0xf), (9, 1), "the IPv6 map");
        assert_eq!(
            40 + 1 + ((p[40] >> 16) & 0xffff) as usize,
            43,
            "a miss falls back to the low bits"
        );
        assert_eq!(p[44] >> 32, 3);
        assert_eq!(p[45], 0x95);
    }
}
