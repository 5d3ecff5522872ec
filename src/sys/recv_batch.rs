//! Many datagrams from one UDP socket with one `recvmmsg`: the rest of a
//! burst after the first datagram woke its task. One per shard, borrowed
//! only while a batch is handled, so idle sessions hold no such buffers.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

pub struct RecvBatch {
    arena: Vec<u8>,
    slot: usize,
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    received: usize,
}

impl RecvBatch {
    /// Room for `count` datagrams of up to `slot` bytes.
    pub fn new(count: usize, slot: usize) -> Self {
        // SAFETY: all-zero is valid for these plain C structs.
        let (msgs, iovs, addrs) = unsafe {
            (
                (0..count).map(|_| std::mem::zeroed()).collect(),
                (0..count).map(|_| std::mem::zeroed()).collect(),
                (0..count).map(|_| std::mem::zeroed()).collect(),
            )
        };
        Self {
            arena: vec![0; count * slot],
            slot,
            msgs,
            iovs,
            addrs,
            received: 0,
        }
    }

    /// Takes whatever is queued on `fd`, up to the batch size, without
    /// waiting; returns how many datagrams arrived.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.received = 0;
        let count = self.msgs.len();
        for i in 0..count {
            let base = self.arena[i * self.slot..].as_mut_ptr();
            self.iovs[i] = libc::iovec {
                iov_base: base.cast(),
                iov_len: self.slot,
            };
            let m = &mut self.msgs[i].msg_hdr;
            m.msg_name = (&raw mut self.addrs[i]).cast();
            m.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            m.msg_iov = &raw mut self.iovs[i];
            m.msg_iovlen = 1;
            m.msg_control = std::ptr::null_mut();
            m.msg_controllen = 0;
            m.msg_flags = 0;
        }
        // SAFETY: every msghdr points at live buffers of this struct, which
        // stay put (no reallocation) for the duration of the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                count as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        self.received = n as usize;
        Ok(self.received)
    }

    /// Datagram `i` of the last `recv` and its sender; `None` past the end,
    /// for a truncated datagram (larger than a slot) or an unknown address.
    pub fn get(&mut self, i: usize) -> Option<(&mut [u8], SocketAddr)> {
        if i >= self.received {
            return None;
        }
        let m = &self.msgs[i];
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            return None;
        }
        let len = (m.msg_len as usize).min(self.slot);
        // SAFETY: the kernel wrote a socket address of `msg_namelen` bytes.
        let from =
            unsafe { socket2::SockAddr::new(self.addrs[i], m.msg_hdr.msg_namelen) }.as_socket()?;
        let start = i * self.slot;
        Some((&mut self.arena[start..start + len], from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    #[test]
    fn takes_a_burst_in_one_call_and_flags_truncation() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut batch = RecvBatch::new(4, 100);
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 0);
        for len in [10usize, 100, 101, 20, 30] {
            tx.send_to(&vec![len as u8; len], rx.local_addr().unwrap())
                .unwrap();
        }
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 4);
        let (d, from) = batch.get(0).unwrap();
        assert_eq!((d.len(), d[0], from), (10, 10, tx.local_addr().unwrap()));
        assert_eq!(batch.get(1).map(|(d, _)| d.len()), Some(100));
        assert!(
            batch.get(2).is_none(),
            "101 bytes do not fit a 100-byte slot"
        );
        assert_eq!(batch.get(3).map(|(d, _)| d.len()), Some(20));
        assert!(batch.get(4).is_none());
        assert_eq!(batch.recv(rx.as_raw_fd()).unwrap(), 1);
        assert_eq!(batch.get(0).map(|(d, _)| d.len()), Some(30));
    }
}
