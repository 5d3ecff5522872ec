//! The TUN steering program: picks the queue from the packet's destination
//! so a packet for a lease is read by the shard that owns it (`pool.rs`).
//!
//! IPv4: `queue = daddr % queues`; IPv6: the last 32 bits of daddr, same rule.
//! `BPF_LD|BPF_ABS` loads are big-endian, i.e. the address as a number.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

// linux/if_tun.h
const TUNSETSTEERINGEBPF: libc::c_ulong = 0x8004_54e0;
// linux/bpf.h
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;

/// One eBPF instruction, encoded as the kernel's `struct bpf_insn`.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64) | ((dst as u64) << 8) | ((src as u64) << 12) | (((off as u16) as u64) << 16) | (((imm as u32) as u64) << 32)
}

/// The program for `queues` queues.
pub fn steering_program(queues: u32) -> [u64; 10] {
    let n = queues.max(1) as i32;
    [
        insn(0xbf, 6, 1, 0, 0),  // r6 = r1 (skb, required by LD_ABS)
        insn(0x30, 0, 0, 0, 0),  // r0 = *(u8 *)(skb + 0)
        insn(0x77, 0, 0, 0, 4),  // r0 >>= 4 (IP version)
        insn(0x15, 0, 0, 3, 6),  // if r0 == 6 goto v6
        insn(0x20, 0, 0, 0, 16), // r0 = be32 at 16 (IPv4 daddr)
        insn(0x97, 0, 0, 0, n),  // r0 %= n
        insn(0x95, 0, 0, 0, 0),  // exit
        insn(0x20, 0, 0, 0, 36), // v6: r0 = be32 at 36 (daddr low 32 bits)
        insn(0x97, 0, 0, 0, n),  // r0 %= n
        insn(0x95, 0, 0, 0, 0),  // exit
    ]
}

/// `union bpf_attr` for BPF_PROG_LOAD, up to the fields we set.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    _rest: [u64; 12],
}

/// Loads the steering program and attaches it to the device (through any
/// of its queues). The device keeps a reference; the returned fd may drop.
pub fn attach_steering(queue_fd: &OwnedFd, queues: u32) -> io::Result<OwnedFd> {
    let prog = steering_program(queues);
    let mut log = vec![0u8; 4096];
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: c"GPL".as_ptr() as u64,
        log_level: 1,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        ..Default::default()
    };
    // SAFETY: attr points to valid program, license and log buffers that
    // outlive the call; the size passed is the struct's size.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, &attr, std::mem::size_of::<ProgLoadAttr>()) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        let msg = String::from_utf8_lossy(&log).trim_end_matches('\0').trim().to_owned();
        return Err(io::Error::new(e.kind(), format!("loading the TUN steering program: {e} {msg}")));
    }
    // SAFETY: the kernel returned a new fd that nobody else owns.
    let prog_fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let raw: libc::c_int = prog_fd.as_raw_fd();
    // SAFETY: TUNSETSTEERINGEBPF reads an int (the program fd).
    if unsafe { libc::ioctl(queue_fd.as_raw_fd(), TUNSETSTEERINGEBPF, &raw) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("TUNSETSTEERINGEBPF: {e}")));
    }
    Ok(prog_fd)
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
        let p = steering_program(3);
        assert_eq!(p[5] >> 32, 3);
        assert_eq!((p[3] >> 16) & 0xffff, 3, "jump skips the v4 block");
    }
}
