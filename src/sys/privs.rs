//! Dropping root once the privileged setup is done: another user and
//! group, and only the capabilities still needed (see `shard::privileges`).

use std::ffi::CString;
use std::io;

/// Capability numbers (linux/capability.h).
pub mod cap {
    pub const DAC_READ_SEARCH: u32 = 2;
    pub const NET_BIND_SERVICE: u32 = 10;
    pub const NET_ADMIN: u32 = 12;
    pub const BPF: u32 = 39;

    /// A capability's name, for logs.
    pub fn name(c: u32) -> &'static str {
        match c {
            DAC_READ_SEARCH => "CAP_DAC_READ_SEARCH",
            NET_BIND_SERVICE => "CAP_NET_BIND_SERVICE",
            NET_ADMIN => "CAP_NET_ADMIN",
            BPF => "CAP_BPF",
            _ => "CAP_?",
        }
    }
}

/// A user as the system's database knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    /// The primary group.
    pub gid: u32,
}

/// Looks `name` up (getpwnam_r); `None` if the system has no such user.
pub fn user(name: &str) -> io::Result<Option<User>> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `passwd` is plain data (integers and pointers), valid
        // zeroed; getpwnam_r fills it with pointers into `buf`, of the
        // length given, and sets `result` to it or to null. Only the ids,
        // integers, are read, and only when `result` is set.
        let (r, ids) = unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let r = libc::getpwnam_r(
                name.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            (r, (!result.is_null()).then_some((pw.pw_uid, pw.pw_gid)))
        };
        match r {
            0 => return Ok(ids.map(|(uid, gid)| User { uid, gid })),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The real and effective user ids.
pub fn uids() -> (u32, u32) {
    // SAFETY: getuid and geteuid have no preconditions and cannot fail.
    unsafe { (libc::getuid(), libc::geteuid()) }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Becomes `uid`/`gid` (real, effective and saved; the only supplementary
/// group `gid`), keeping the permitted capabilities for [`set_capabilities`].
/// glibc applies each id change to every thread of the process.
pub fn switch_user(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: prctl, setgroups and set*id with plain integer arguments and
    // a one-element group list that outlives the call.
    unsafe {
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0))?;
        check(libc::setgroups(1, &gid))?;
        check(libc::setresgid(gid, gid, gid))?;
        check(libc::setresuid(uid, uid, uid))?;
        check(libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0))
    }
}

const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// Bit masks of the calling thread's (effective, permitted) capabilities.
pub fn capabilities() -> io::Result<(u64, u64)> {
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut d = [CapData::default(); 2];
    // SAFETY: capget with a v3 header and the two data words v3 takes.
    check(unsafe { libc::syscall(libc::SYS_capget, &mut h, d.as_mut_ptr()) } as libc::c_int)?;
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(d[0].effective, d[1].effective),
        join(d[0].permitted, d[1].permitted),
    ))
}

/// Sets this thread's capabilities: `effective` (a subset of `permitted`)
/// and `permitted`, none inheritable, and clears the ambient set, so
/// scripts it starts get none. Threads started afterwards inherit them.
pub fn set_capabilities(effective: &[u32], permitted: &[u32]) -> io::Result<()> {
    let mask = |caps: &[u32]| caps.iter().fold(0u64, |m, c| m | (1 << c));
    let (e, p) = (mask(effective), mask(permitted));
    let mut h = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let d = [
        CapData {
            effective: e as u32,
            permitted: p as u32,
            inheritable: 0,
        },
        CapData {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset with a v3 header and the two data words v3 takes;
    // prctl with integer arguments.
    unsafe {
        check(libc::syscall(libc::SYS_capset, &mut h, d.as_ptr()) as libc::c_int)?;
        check(libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        ))
    }
}

/// Lifts RLIMIT_MEMLOCK (io_uring's registered memory) to unlimited while
/// the process still may, so it needs no CAP_IPC_LOCK afterwards.
pub fn unlimit_memlock() -> io::Result<()> {
    let r = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit reads the struct we pass.
    check(unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &r) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_looked_up_by_name() {
        assert_eq!(user("root").unwrap(), Some(User { uid: 0, gid: 0 }));
        assert_eq!(user("no-such-user-ocu").unwrap(), None);
        assert!(user("a\0b").is_err());
    }

    #[test]
    fn capabilities_read_back() {
        let (effective, permitted) = capabilities().unwrap();
        assert_eq!(
            effective & !permitted,
            0,
            "effective is a subset of permitted"
        );
    }
}
