//! A multi-queue TUN device opened with raw ioctls (linux/if_tun.h).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

// linux/if_tun.h
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
const IFF_TUN: libc::c_short = 0x0001;
const IFF_NO_PI: libc::c_short = 0x1000;
const IFF_MULTI_QUEUE: libc::c_short = 0x0100;
const IFF_TUN_EXCL: libc::c_short = 0x8000u16 as libc::c_short;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;

/// `struct ifreq` with the union members we use.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

#[repr(C)]
union IfReqData {
    flags: libc::c_short,
    mtu: libc::c_int,
    addr: libc::sockaddr_in,
    _pad: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let mut req = Self {
            name: [0; libc::IFNAMSIZ],
            data: IfReqData { _pad: [0; 24] },
        };
        for (d, s) in req.name.iter_mut().zip(name.bytes()) {
            *d = s as libc::c_char;
        }
        Ok(req)
    }
}

/// The queues of one TUN device; queue `i` is the `i`-th fd.
pub struct TunDevice {
    pub name: String,
    pub queues: Vec<OwnedFd>,
    /// Every read and write starts with a `virtio_net_hdr` (proto::offload).
    pub vnet_hdr: bool,
}

/// Which offloads the kernel accepted (see [`TunDevice::enable_offloads`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offloads {
    /// Checksums, TCP and UDP segmentation (kernel 6.2 and later).
    TsoUso,
    /// Checksums and TCP segmentation.
    Tso,
}

impl TunDevice {
    /// Creates device `name` with `queues` queues (IFF_TUN | IFF_NO_PI |
    /// IFF_MULTI_QUEUE, plus IFF_VNET_HDR if asked). Queue fds are blocking: io_uring then waits for a
    /// packet by polling, where a non-blocking fd makes reads fail with
    /// EAGAIN. The first queue is
    /// opened with IFF_TUN_EXCL: an existing device of that name (another
    /// server's) is an error, never silently shared.
    pub fn open(name: &str, queues: usize, vnet_hdr: bool) -> io::Result<Self> {
        let mut fds = Vec::with_capacity(queues);
        for i in 0..queues {
            // SAFETY: a plain open(2) of a constant NUL-terminated path.
            let fd =
                unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
            if fd < 0 {
                return Err(annotate(io::Error::last_os_error(), "open /dev/net/tun"));
            }
            // SAFETY: fd was just returned by open and is owned by nobody else.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            let mut req = IfReq::new(name)?;
            let vnet = if vnet_hdr { IFF_VNET_HDR } else { 0 };
            req.data.flags = IFF_TUN
                | IFF_NO_PI
                | IFF_MULTI_QUEUE
                | vnet
                | if i == 0 { IFF_TUN_EXCL } else { 0 };
            // SAFETY: TUNSETIFF reads and writes a struct ifreq, which `req` is.
            if unsafe { libc::ioctl(owned.as_raw_fd(), TUNSETIFF, &mut req) } < 0 {
                return Err(annotate(
                    io::Error::last_os_error(),
                    &format!("TUNSETIFF {name} (does another server own it?)"),
                ));
            }
            fds.push(owned);
        }
        let dev = Self {
            name: name.to_owned(),
            queues: fds,
            vnet_hdr,
        };
        if vnet_hdr {
            let size = crate::proto::offload::VNET_HDR_LEN as libc::c_int;
            for q in &dev.queues {
                // SAFETY: TUNSETVNETHDRSZ reads one int.
                if unsafe { libc::ioctl(q.as_raw_fd(), TUNSETVNETHDRSZ, &size) } < 0 {
                    return Err(annotate(io::Error::last_os_error(), "TUNSETVNETHDRSZ"));
                }
            }
        }
        Ok(dev)
    }

    /// Lets the kernel hand us unfinished checksums and 64 KB TCP (and,
    /// where supported, UDP) super-packets. Needs `vnet_hdr`.
    pub fn enable_offloads(&self) -> io::Result<Offloads> {
        let fd = self
            .queues
            .first()
            .ok_or_else(|| io::Error::other("no queue"))?
            .as_raw_fd();
        let tso = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6;
        for (flags, which) in [
            (tso | TUN_F_USO4 | TUN_F_USO6, Offloads::TsoUso),
            (tso, Offloads::Tso),
        ] {
            // SAFETY: TUNSETOFFLOAD takes its flags by value.
            if unsafe { libc::ioctl(fd, TUNSETOFFLOAD, flags as libc::c_ulong) } == 0 {
                return Ok(which);
            }
        }
        Err(annotate(io::Error::last_os_error(), "TUNSETOFFLOAD"))
    }

    /// Sets the address, prefix and MTU and brings the device up; the kernel
    /// then routes the network to it.
    pub fn configure(&self, addr: Ipv4Addr, prefix: u8, mtu: u16) -> io::Result<()> {
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: raw is a fresh socket fd owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let s = sock.as_raw_fd();
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(prefix))
        };
        self.ioctl_addr(s, libc::SIOCSIFADDR, addr)?;
        self.ioctl_addr(s, libc::SIOCSIFNETMASK, Ipv4Addr::from(mask))?;
        let mut req = IfReq::new(&self.name)?;
        req.data.mtu = libc::c_int::from(mtu);
        // SAFETY: SIOCSIFMTU reads ifr_mtu from a struct ifreq.
        if unsafe { libc::ioctl(s, libc::SIOCSIFMTU, &mut req) } < 0 {
            return Err(annotate(io::Error::last_os_error(), "SIOCSIFMTU"));
        }
        let mut req = IfReq::new(&self.name)?;
        // SAFETY: SIOCGIFFLAGS fills ifr_flags of a struct ifreq.
        if unsafe { libc::ioctl(s, libc::SIOCGIFFLAGS, &mut req) } < 0 {
            return Err(annotate(io::Error::last_os_error(), "SIOCGIFFLAGS"));
        }
        // SAFETY: flags was just written by the kernel.
        req.data.flags =
            unsafe { req.data.flags } | (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        // SAFETY: SIOCSIFFLAGS reads ifr_flags of a struct ifreq.
        if unsafe { libc::ioctl(s, libc::SIOCSIFFLAGS, &mut req) } < 0 {
            return Err(annotate(io::Error::last_os_error(), "SIOCSIFFLAGS"));
        }
        Ok(())
    }

    /// Adds the server's IPv6 address (and so the route to the pool).
    pub fn configure_v6(&self, addr: Ipv6Addr, prefix: u8) -> io::Result<()> {
        /// `struct in6_ifreq` (linux/ipv6.h).
        #[repr(C)]
        struct In6IfReq {
            addr: libc::in6_addr,
            prefixlen: u32,
            ifindex: libc::c_int,
        }
        let name = std::ffi::CString::new(self.name.as_str())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a NUL-terminated name.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                &format!("index of {}", self.name),
            ));
        }
        // SAFETY: socket(2) with constant arguments.
        let raw = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                "IPv6 socket (is IPv6 disabled?)",
            ));
        }
        // SAFETY: raw is a fresh socket fd owned by nobody else.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = In6IfReq {
            addr: libc::in6_addr {
                s6_addr: addr.octets(),
            },
            prefixlen: u32::from(prefix),
            ifindex: ifindex as libc::c_int,
        };
        // SAFETY: SIOCSIFADDR on an AF_INET6 socket reads a struct in6_ifreq.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFADDR, &mut req) } < 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                &format!("setting {addr}/{prefix} on {}", self.name),
            ));
        }
        Ok(())
    }

    fn ioctl_addr(&self, sock: RawFd, op: libc::c_ulong, addr: Ipv4Addr) -> io::Result<()> {
        let mut req = IfReq::new(&self.name)?;
        req.data.addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(addr).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK read a sockaddr_in from ifreq.
        if unsafe { libc::ioctl(sock, op, &mut req) } < 0 {
            return Err(annotate(
                io::Error::last_os_error(),
                &format!("setting {addr} on {}", self.name),
            ));
        }
        Ok(())
    }
}

/// Adds (`add`) or removes the kernel route `net dev device` (an iroute:
/// a network behind a client, reached through the tunnel).
pub fn set_route(device: &str, net: ipnet::IpNet, add: bool) -> io::Result<()> {
    match net {
        ipnet::IpNet::V4(n) => set_route4(device, n, add),
        ipnet::IpNet::V6(n) => set_route6(device, n, add),
    }
}

/// `struct in6_rtmsg` (linux/ipv6_route.h); libc's has private fields.
#[repr(C)]
struct In6Rtmsg {
    dst: libc::in6_addr,
    src: libc::in6_addr,
    gateway: libc::in6_addr,
    kind: u32,
    dst_len: u16,
    src_len: u16,
    metric: u32,
    info: libc::c_ulong,
    flags: u32,
    ifindex: libc::c_int,
}

fn set_route6(device: &str, net: ipnet::Ipv6Net, add: bool) -> io::Result<()> {
    let name =
        std::ffi::CString::new(device).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: a NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(annotate(
            io::Error::last_os_error(),
            &format!("index of {device}"),
        ));
    }
    let zero = libc::in6_addr { s6_addr: [0; 16] };
    let mut rt = In6Rtmsg {
        dst: libc::in6_addr {
            s6_addr: net.network().octets(),
        },
        src: zero,
        gateway: zero,
        kind: 0,
        dst_len: u16::from(net.prefix_len()),
        src_len: 0,
        // 0: the kernel's default metric for user routes (1024).
        metric: 0,
        info: 0,
        flags: libc::RTF_UP as u32,
        ifindex: ifindex as libc::c_int,
    };
    route_ioctl(
        libc::AF_INET6,
        add,
        &mut rt,
        &format!("route {net} dev {device}"),
    )
}

/// SIOCADDRT/SIOCDELRT with `req` (struct rtentry for AF_INET, struct
/// in6_rtmsg for AF_INET6) on a socket of `family`.
fn route_ioctl<T>(family: libc::c_int, add: bool, req: &mut T, what: &str) -> io::Result<()> {
    // SAFETY: socket(2) with constant flags.
    let raw = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(annotate(io::Error::last_os_error(), "socket for a route"));
    }
    // SAFETY: raw is a fresh socket fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let op = if add {
        libc::SIOCADDRT
    } else {
        libc::SIOCDELRT
    };
    // SAFETY: the callers pass the struct the kernel reads for this family,
    // with any pointers in it alive until after the call.
    if unsafe { libc::ioctl(sock.as_raw_fd(), op, std::ptr::from_mut(req)) } < 0 {
        let verb = if add { "adding" } else { "removing" };
        return Err(annotate(
            io::Error::last_os_error(),
            &format!("{verb} {what}"),
        ));
    }
    Ok(())
}

fn set_route4(device: &str, net: ipnet::Ipv4Net, add: bool) -> io::Result<()> {
    let sin = |a: Ipv4Addr| {
        let sa = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(a).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: sockaddr_in fits in (and is laid out as) a sockaddr.
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sa) }
    };
    let name =
        std::ffi::CString::new(device).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: an all-zero rtentry is valid (null device, zero addresses).
    let mut rt: libc::rtentry = unsafe { std::mem::zeroed() };
    rt.rt_dst = sin(net.network());
    rt.rt_genmask = sin(net.netmask());
    rt.rt_flags = libc::RTF_UP;
    rt.rt_dev = name.as_ptr().cast_mut();
    // rt_dev points to `name`, alive until after the call.
    route_ioctl(
        libc::AF_INET,
        add,
        &mut rt,
        &format!("route {net} dev {device}"),
    )
}

fn annotate(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// One read if a packet is queued; `Ok(None)` when the queue is empty.
pub fn read_packet(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll on one pollfd we own, without waiting.
    if unsafe { libc::poll(&mut pfd, 1, 0) } <= 0 {
        return Ok(None);
    }
    // SAFETY: buf is valid for buf.len() bytes of writes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n >= 0 {
        return Ok(Some(n as usize));
    }
    Err(io::Error::last_os_error())
}
