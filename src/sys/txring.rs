//! [`TxRing`]: every packet a shard sends, to its TUN queue or to a DTLS
//! socket, built in place in a slot and submitted in batches.
//!
//! Consecutive DTLS records of one size for one socket and destination
//! are sent as one `sendmsg` with `UDP_SEGMENT` (UDP GSO): the kernel runs
//! its UDP send path once per batch instead of once per packet. A shorter
//! record may end a batch (the kernel allows a short last segment). A
//! record for a shared (unconnected) socket carries its destination.
//!
//! Likewise, packets for a TUN queue with a virtio_net_hdr that continue
//! one TCP (or UDP) flow are merged into one super-packet (proto::offload
//! `Gro`) and written with one `writev`: the kernel's receive path then
//! runs once per batch too.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::RawFd;

use io_uring::{opcode, types};

use super::uring::{RingStats, Slots};
use crate::proto::offload::{Gro, MAX_GRO_SEGMENTS, VNET_HDR_LEN};

/// UDP_SEGMENT (linux/udp.h): the cmsg that asks for GSO.
const UDP_SEGMENT: libc::c_int = 103;
/// Most segments in one GSO send (UDP_MAX_SEGMENTS, linux/udp.h).
const MAX_SEGMENTS: usize = 64;
/// A GSO send carries at most one IP datagram's worth of payload.
const MAX_GSO_BYTES: usize = 65_000;
/// user_data of a GSO send: this bit plus the op index (slots use the low bits).
const GSO_TAG: u64 = 1 << 40;
/// user_data of a merged TUN write: this bit plus the op index.
const GRO_TAG: u64 = 1 << 41;

/// A destination as sendmsg takes it.
#[derive(Clone, Copy)]
#[repr(C)]
union SockBuf {
    v4: libc::sockaddr_in,
    v6: libc::sockaddr_in6,
}

/// `a` as a sockaddr and its length.
fn sock_buf(a: &SocketAddr) -> (SockBuf, libc::socklen_t) {
    match a {
        SocketAddr::V4(a) => (
            SockBuf {
                v4: libc::sockaddr_in {
                    sin_family: libc::AF_INET as libc::sa_family_t,
                    sin_port: a.port().to_be(),
                    sin_addr: libc::in_addr {
                        s_addr: u32::from_ne_bytes(a.ip().octets()),
                    },
                    sin_zero: [0; 8],
                },
            },
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        ),
        SocketAddr::V6(a) => (
            SockBuf {
                v6: libc::sockaddr_in6 {
                    sin6_family: libc::AF_INET6 as libc::sa_family_t,
                    sin6_port: a.port().to_be(),
                    sin6_flowinfo: a.flowinfo(),
                    sin6_addr: libc::in6_addr {
                        s6_addr: a.ip().octets(),
                    },
                    sin6_scope_id: a.scope_id(),
                },
            },
            size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        ),
    }
}

/// One GSO send or merged TUN write in flight: what its msghdr or iovecs
/// point at stays here, at a fixed address, until its completion.
struct GsoOp {
    msg: libc::msghdr,
    /// The destination, for a shared socket.
    name: SockBuf,
    iov: [libc::iovec; MAX_SEGMENTS],
    /// cmsghdr + u16, 8-byte aligned.
    control: [u64; 4],
    slots: [u32; MAX_SEGMENTS],
    count: usize,
}

/// The batch being gathered (none while `count` is 0): records for `fd`
/// (and `dest` on a shared socket), all `segment` bytes long (the last may
/// be shorter, then it is closed).
struct Open {
    fd: RawFd,
    dest: Option<SocketAddr>,
    segment: usize,
    bytes: usize,
    closed: bool,
    slots: [(u32, u32, u32); MAX_SEGMENTS],
    count: usize,
}

/// The TUN super-packet being gathered: `parts[0]` is the header and the
/// first packet, the others are payloads of the packets merged into it.
struct TunBatch {
    fd: RawFd,
    gro: Gro,
    parts: [(u32, u32, u32); MAX_GRO_SEGMENTS],
    count: usize,
}

pub struct TxRing {
    slots: Slots,
    free: Vec<u32>,
    /// Per slot: the destination of a single record sent on a shared
    /// socket, kept until its completion.
    names: Box<[SockBuf]>,
    ops: Box<[GsoOp]>,
    free_ops: Vec<usize>,
    open: Open,
    /// Off after the kernel refused a GSO send (no UDP GSO on the path).
    gso: bool,
    tun: Option<TunBatch>,
    /// Whether TUN writes merge TCP segments, and UDP datagrams too
    /// (`Some(true)`); see `set_tun_gro`.
    gro: Option<bool>,
}

const _: () = assert!(MAX_GRO_SEGMENTS <= MAX_SEGMENTS);

impl TxRing {
    pub fn new(count: usize, slot_size: usize) -> io::Result<Self> {
        let op = || GsoOp {
            // SAFETY: msghdr is a plain C struct for which all-zero is valid.
            msg: unsafe { std::mem::zeroed() },
            name: sock_buf(&SocketAddr::from(([0, 0, 0, 0], 0))).0,
            // SAFETY: the same for an array of iovec.
            iov: unsafe { std::mem::zeroed() },
            control: [0; 4],
            slots: [0; MAX_SEGMENTS],
            count: 0,
        };
        let nops = (count / 4).max(1);
        Ok(Self {
            slots: Slots::new(count, slot_size, 0, false)?,
            free: (0..count as u32).rev().collect(),
            names: vec![sock_buf(&SocketAddr::from(([0, 0, 0, 0], 0))).0; count].into(),
            ops: (0..nops).map(|_| op()).collect(),
            free_ops: (0..nops).rev().collect(),
            open: Open {
                fd: -1,
                dest: None,
                segment: 0,
                bytes: 0,
                closed: false,
                slots: [(0, 0, 0); MAX_SEGMENTS],
                count: 0,
            },
            gso: true,
            tun: None,
            gro: None,
        })
    }

    /// Lets `queue_tun` merge TCP segments (the TUN device took TSO), and
    /// UDP datagrams if `udp` (it took USO too); `None` turns merging off.
    pub fn set_tun_gro(&mut self, gro: Option<bool>) {
        self.gro = gro;
    }

    pub fn stats(&self) -> RingStats {
        self.slots.stats
    }

    pub fn slot_size(&self) -> usize {
        self.slots.slot_size
    }

    fn reap(&mut self) {
        for cqe in self.slots.ring.completion() {
            self.slots.in_flight -= 1;
            let data = cqe.user_data();
            if data & (GSO_TAG | GRO_TAG) != 0 {
                let i = (data & !(GSO_TAG | GRO_TAG)) as usize;
                let op = &self.ops[i];
                self.free.extend_from_slice(&op.slots[..op.count]);
                self.free_ops.push(i);
                let refused = matches!(-cqe.result(), libc::EIO | libc::EINVAL | libc::EOPNOTSUPP);
                if cqe.result() < 0 {
                    self.slots.stats.errors += 1;
                    self.slots.stats.last_errno = -cqe.result();
                }
                let err = || io::Error::from_raw_os_error(-cqe.result());
                if refused && data & GSO_TAG != 0 && self.gso {
                    self.gso = false;
                    tracing::warn!(
                        "UDP GSO refused ({}); sending one datagram per record",
                        err()
                    );
                } else if refused && data & GRO_TAG != 0 && self.gro.is_some() {
                    self.gro = None;
                    tracing::warn!(
                        "merged TUN write refused ({}); writing one packet at a time",
                        err()
                    );
                }
            } else {
                if cqe.result() < 0 {
                    self.slots.stats.errors += 1;
                }
                self.free.push(data as u32);
            }
        }
    }

    fn take_slot(&mut self) -> Option<u32> {
        if self.free.is_empty() {
            self.flush_open();
            self.flush_tun();
            let _ = self.slots.submit();
            self.reap();
        }
        let slot = self.free.pop();
        if slot.is_none() {
            self.slots.stats.full += 1;
        }
        slot
    }

    fn build(
        &mut self,
        slot: u32,
        build: impl FnOnce(&mut [u8]) -> Option<Range<usize>>,
    ) -> Option<Range<usize>> {
        match build(self.slots.slot(slot)) {
            Some(r) if r.end <= self.slots.slot_size && !r.is_empty() => Some(r),
            _ => {
                self.free.push(slot);
                None
            }
        }
    }

    fn push_write(&mut self, fd: RawFd, slot: u32, range: Range<usize>) -> bool {
        let sqe = self.slots.write_entry(fd, slot, range);
        self.push_slot(sqe, slot)
    }

    /// Queues `sqe`, which sends from `slot`; the slot is freed if the
    /// ring refuses it.
    fn push_slot(&mut self, sqe: io_uring::squeue::Entry, slot: u32) -> bool {
        if self.slots.push(&sqe.user_data(u64::from(slot))).is_err() {
            self.free.push(slot);
            self.slots.stats.errors += 1;
            return false;
        }
        true
    }

    /// A write on a connected socket or a TUN queue, or a send to `dest`
    /// on a shared socket.
    fn push_send(
        &mut self,
        fd: RawFd,
        dest: Option<&SocketAddr>,
        slot: u32,
        range: Range<usize>,
    ) -> bool {
        let Some(dest) = dest else {
            return self.push_write(fd, slot, range);
        };
        let (name, name_len) = sock_buf(dest);
        self.names[slot as usize] = name;
        let buf = self.slots.slot(slot)[range.clone()].as_ptr();
        let sqe = opcode::Send::new(types::Fd(fd), buf, range.len() as u32)
            .dest_addr((&raw const self.names[slot as usize]).cast())
            .dest_addr_len(name_len)
            .build();
        self.push_slot(sqe, slot)
    }

    /// Builds a packet in a free slot and queues its write to `fd`: `build`
    /// fills the slot and returns the range to send (`None` drops it).
    /// False if the packet was dropped.
    pub fn queue_with(
        &mut self,
        fd: RawFd,
        build: impl FnOnce(&mut [u8]) -> Option<Range<usize>>,
    ) -> bool {
        // Keep a socket's datagrams in the order they were queued.
        if self.open.count > 0 && self.open.fd == fd {
            self.flush_open();
        }
        if self.tun.as_ref().is_some_and(|b| b.fd == fd) {
            self.flush_tun();
        }
        let Some(slot) = self.take_slot() else {
            return false;
        };
        let Some(range) = self.build(slot, build) else {
            return false;
        };
        self.push_write(fd, slot, range)
    }

    /// Copies `pkt` into a slot and queues its write to `fd`.
    pub fn queue_write(&mut self, fd: RawFd, pkt: &[u8]) -> bool {
        self.queue_with(fd, |buf| {
            let dst = buf.get_mut(..pkt.len())?;
            dst.copy_from_slice(pkt);
            Some(0..pkt.len())
        })
    }

    /// Like `queue_with` for a datagram socket, connected (`dest` None)
    /// or shared: consecutive datagrams of one size to one `fd` and `dest`
    /// leave as one GSO send.
    pub fn queue_datagram(
        &mut self,
        fd: RawFd,
        dest: Option<&SocketAddr>,
        build: impl FnOnce(&mut [u8]) -> Option<Range<usize>>,
    ) -> bool {
        if !self.gso {
            if self.open.count > 0 && self.open.fd == fd {
                self.flush_open();
            }
            let Some(slot) = self.take_slot() else {
                return false;
            };
            let Some(range) = self.build(slot, build) else {
                return false;
            };
            return self.push_send(fd, dest, slot, range);
        }
        let Some(slot) = self.take_slot() else {
            return false;
        };
        let Some(range) = self.build(slot, build) else {
            return false;
        };
        let len = range.len();
        let o = &self.open;
        let fits = o.count > 0
            && o.fd == fd
            && o.dest.as_ref() == dest
            && !o.closed
            && len <= o.segment
            && o.count < MAX_SEGMENTS
            && o.bytes + len <= MAX_GSO_BYTES;
        if !fits {
            self.flush_open();
            self.open.fd = fd;
            self.open.dest = dest.copied();
            self.open.segment = len;
            self.open.bytes = 0;
        }
        let open = &mut self.open;
        open.slots[open.count] = (slot, range.start as u32, len as u32);
        open.count += 1;
        open.bytes += len;
        // A shorter record can only be the last segment.
        open.closed = len < open.segment;
        true
    }

    /// Turns the gathered batch into one SQE: a plain write for a single
    /// record, a GSO sendmsg for several.
    fn flush_open(&mut self) {
        let (count, fd) = (std::mem::take(&mut self.open.count), self.open.fd);
        let dest = self.open.dest;
        self.open.closed = false;
        if count == 0 {
            return;
        }
        let free_op = if count > 1 { self.free_ops.pop() } else { None };
        let Some(i) = free_op else {
            // One record, or no op free: one send each.
            for k in 0..count {
                let (slot, start, len) = self.open.slots[k];
                self.push_send(
                    fd,
                    dest.as_ref(),
                    slot,
                    start as usize..(start + len) as usize,
                );
            }
            return;
        };
        let segment = self.open.segment as u16;
        for k in 0..count {
            let (slot, start, len) = self.open.slots[k];
            let base = self.slots.slot(slot).as_mut_ptr();
            let op = &mut self.ops[i];
            op.iov[k] = libc::iovec {
                // SAFETY: `start` is inside the slot (checked when built).
                iov_base: unsafe { base.add(start as usize) }.cast(),
                iov_len: len as usize,
            };
            op.slots[k] = slot;
        }
        let op = &mut self.ops[i];
        op.count = count;
        op.msg = fill_msghdr(&mut op.iov[..count], &mut op.control, segment);
        if let Some(dest) = &dest {
            let (name, len) = sock_buf(dest);
            op.name = name;
            op.msg.msg_name = (&raw mut op.name).cast();
            op.msg.msg_namelen = len;
        }
        let sqe = opcode::SendMsg::new(types::Fd(fd), &raw const op.msg)
            .build()
            .user_data(GSO_TAG | i as u64);
        self.slots.stats.gso_sends += 1;
        self.slots.stats.gso_datagrams += count as u64;
        if self.slots.push(&sqe).is_err() {
            let op = &self.ops[i];
            self.free.extend_from_slice(&op.slots[..op.count]);
            self.free_ops.push(i);
            self.slots.stats.errors += 1;
        }
    }

    /// Queues `pkt` for a TUN queue whose reads and writes carry a
    /// virtio_net_hdr; it may be merged with the packets queued before it.
    pub fn queue_tun(&mut self, fd: RawFd, pkt: &[u8]) -> bool {
        let Some(slot) = self.take_slot() else {
            return false;
        };
        let total = VNET_HDR_LEN + pkt.len();
        let Some(buf) = self.slots.slot(slot).get_mut(..total) else {
            self.free.push(slot);
            return false;
        };
        buf[..VNET_HDR_LEN].fill(0);
        buf[VNET_HDR_LEN..].copy_from_slice(pkt);
        if let Some(b) = self.tun.as_mut().filter(|b| b.fd == fd) {
            let (first_slot, _, first_len) = b.parts[0];
            let first = &self.slots.slot(first_slot)[VNET_HDR_LEN..first_len as usize];
            if let Some(at) = b.gro.extend(first, pkt) {
                b.parts[b.count] = (slot, (VNET_HDR_LEN + at) as u32, (pkt.len() - at) as u32);
                b.count += 1;
                return true;
            }
        }
        self.flush_tun();
        if let Some(gro) = self.gro.and_then(|udp| Gro::start(pkt, udp)) {
            let mut parts = [(0, 0, 0); MAX_GRO_SEGMENTS];
            parts[0] = (slot, 0, total as u32);
            self.tun = Some(TunBatch {
                fd,
                gro,
                parts,
                count: 1,
            });
            return true;
        }
        self.push_write(fd, slot, 0..total)
    }

    /// Writes the gathered TUN batch: one packet as it is, several as one
    /// super-packet through `writev`.
    fn flush_tun(&mut self) {
        let Some(b) = self.tun.take() else { return };
        let free_op = if b.count > 1 {
            self.free_ops.pop()
        } else {
            None
        };
        let Some(i) = free_op else {
            // One packet, or no op free: each packet as it came (their
            // slots still hold them whole, behind a zero header).
            for &(slot, start, len) in &b.parts[..b.count] {
                self.push_write(b.fd, slot, 0..(start + len) as usize);
            }
            return;
        };
        let (first_slot, _, first_len) = b.parts[0];
        let (hdr, first) =
            self.slots.slot(first_slot)[..first_len as usize].split_at_mut(VNET_HDR_LEN);
        if let Ok(hdr) = <&mut [u8; VNET_HDR_LEN]>::try_from(hdr) {
            b.gro.finish(hdr, first);
        }
        for (k, &(slot, start, len)) in b.parts[..b.count].iter().enumerate() {
            let base = self.slots.slot(slot).as_mut_ptr();
            let op = &mut self.ops[i];
            op.iov[k] = libc::iovec {
                // SAFETY: `start + len` is inside the slot (checked when queued).
                iov_base: unsafe { base.add(start as usize) }.cast(),
                iov_len: len as usize,
            };
            op.slots[k] = slot;
        }
        let op = &mut self.ops[i];
        op.count = b.count;
        let sqe = opcode::Writev::new(types::Fd(b.fd), op.iov.as_ptr(), b.count as u32)
            .build()
            .user_data(GRO_TAG | i as u64);
        self.slots.stats.gro_writes += 1;
        self.slots.stats.gro_packets += b.count as u64;
        if self.slots.push(&sqe).is_err() {
            let op = &self.ops[i];
            self.free.extend_from_slice(&op.slots[..op.count]);
            self.free_ops.push(i);
            self.slots.stats.errors += 1;
        }
    }

    /// Hands everything queued to the kernel with one syscall and collects
    /// the slots of writes already done.
    pub fn submit(&mut self) -> io::Result<()> {
        self.flush_open();
        self.flush_tun();
        let r = self.slots.submit();
        self.reap();
        r
    }
}

/// A msghdr without a destination: `iov` as the payload, one UDP_SEGMENT
/// cmsg in `control`.
fn fill_msghdr(iov: &mut [libc::iovec], control: &mut [u64; 4], segment: u16) -> libc::msghdr {
    // SAFETY: all-zero is a valid msghdr; the CMSG macros only walk the
    // buffer we pass, which is large enough for one u16 cmsg (checked).
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        let space = libc::CMSG_SPACE(size_of::<u16>() as u32) as usize;
        debug_assert!(space <= size_of_val(control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_UDP;
        (*cmsg).cmsg_type = UDP_SEGMENT;
        (*cmsg).cmsg_len = libc::CMSG_LEN(size_of::<u16>() as u32) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<u16>(), segment);
        msg
    }
}

impl Drop for TxRing {
    fn drop(&mut self) {
        self.flush_open();
        self.flush_tun();
        let _ = self.slots.submit();
        let _ = self.slots.quiesce(false);
        self.slots.leak_if_busy("TX ring");
    }
}
