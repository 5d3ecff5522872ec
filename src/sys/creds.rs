//! Who is at the other end of a Unix socket, and group look-ups: the
//! control socket's access check.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd};

/// A peer's credentials, as they were at its connect().
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected Unix socket.
pub fn peer_cred(sock: BorrowedFd<'_>) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a ucred
    // of exactly that size that we own; `sock` is a live descriptor.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != size_of::<libc::ucred>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "short SO_PEERCRED",
        ));
    }
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// The most supplementary groups a Linux process can have (NGROUPS_MAX).
const MAX_GROUPS: usize = 65536;

/// SO_PEERGROUPS of a connected Unix socket: the peer's supplementary
/// groups as they were at its connect() (Linux 4.13 and later).
pub fn peer_groups(sock: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = (groups.len() * size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into the vector's
        // buffer, which holds exactly that many; `sock` is a live descriptor.
        let r = unsafe {
            libc::getsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let needed = len as usize / size_of::<libc::gid_t>();
        if r == 0 {
            groups.truncate(needed);
            return Ok(groups);
        }
        let e = io::Error::last_os_error();
        // Too small a buffer: `len` now says how much the list needs.
        if e.raw_os_error() == Some(libc::ERANGE) && needed > groups.len() && needed <= MAX_GROUPS {
            groups.resize(needed, 0);
            continue;
        }
        return Err(e);
    }
}

/// The id of group `name`; `None` if the system has no such group.
pub fn group_id(name: &str) -> io::Result<Option<u32>> {
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: `group` is plain data (integers and pointers), valid
        // zeroed; getgrnam_r fills it with pointers into `buf`, of the
        // length given, and sets `result` to it or to null. Only the gid, an
        // integer, is read, and only when `result` is set.
        let (r, gid) = unsafe {
            let mut group: libc::group = std::mem::zeroed();
            let r = libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            (r, (!result.is_null()).then_some(group.gr_gid))
        };
        match r {
            0 => return Ok(gid),
            // Some C libraries say so instead of a null result.
            libc::ENOENT | libc::ESRCH => return Ok(None),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The names of the groups `user` is in (its primary group first) whose
/// ids are at least `gid_min`, from the system's databases (NSS); `None`
/// if there is no such user.
pub fn user_groups(user: &str, gid_min: u32) -> io::Result<Option<Vec<String>>> {
    let cname = CString::new(user).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    let primary = loop {
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: `passwd` is plain data, valid zeroed; getpwnam_r fills it
        // with pointers into `buf` of the given length and sets `result`;
        // only the gid, an integer, is read, and only when it is set.
        let (r, gid) = unsafe {
            let mut pw: libc::passwd = std::mem::zeroed();
            let r = libc::getpwnam_r(
                cname.as_ptr(),
                &mut pw,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            );
            (r, (!result.is_null()).then_some(pw.pw_gid))
        };
        match (r, gid) {
            (0, Some(g)) => break g,
            (0, None) | (libc::ENOENT | libc::ESRCH, _) => return Ok(None),
            (libc::ERANGE, _) if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            (e, _) => return Err(io::Error::from_raw_os_error(e)),
        }
    };
    let mut gids: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = libc::c_int::try_from(gids.len()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `gids` has room for `n` entries; getgrouplist writes at
        // most that many and sets `n` to the number it found.
        let r = unsafe { libc::getgrouplist(cname.as_ptr(), primary, gids.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).unwrap_or(0);
        if r >= 0 {
            gids.truncate(n);
            break;
        }
        if n <= gids.len() || n > 1 << 16 {
            return Err(io::Error::other("getgrouplist failed"));
        }
        gids.resize(n, 0);
    }
    let mut names = Vec::new();
    for gid in gids.into_iter().filter(|g| *g >= gid_min) {
        if let Some(name) = group_name(gid)? {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    Ok(Some(names))
}

/// The name of group `gid`, if the system knows it.
fn group_name(gid: u32) -> io::Result<Option<String>> {
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        let mut result: *mut libc::group = std::ptr::null_mut();
        // SAFETY: as in `group_id`; the name is copied out of `buf` while
        // `buf` lives, and only when `result` is set.
        let (r, name) = unsafe {
            let mut group: libc::group = std::mem::zeroed();
            let r = libc::getgrgid_r(gid, &mut group, buf.as_mut_ptr(), buf.len(), &mut result);
            let name = (!result.is_null() && !group.gr_name.is_null()).then(|| {
                std::ffi::CStr::from_ptr(group.gr_name)
                    .to_string_lossy()
                    .into_owned()
            });
            (r, name)
        };
        match r {
            0 => return Ok(name),
            libc::ENOENT | libc::ESRCH => return Ok(None),
            libc::ERANGE if buf.len() < 1 << 20 => buf.resize(buf.len() * 2, 0),
            e => return Err(io::Error::from_raw_os_error(e)),
        }
    }
}

/// The process's effective user id.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_pair_shows_our_own_credentials() {
        let (a, _b) = UnixStream::pair().unwrap();
        let c = peer_cred(a.as_fd()).unwrap();
        assert_eq!(c.pid, std::process::id() as i32);
        assert_eq!(c.uid, effective_uid());
        // SAFETY: getegid has no preconditions.
        assert_eq!(c.gid, unsafe { libc::getegid() });
        // Our own supplementary groups, in whatever order the kernel keeps.
        // SAFETY: getgroups(0, null) only counts; the second call fills a
        // buffer of that many.
        let mut ours = unsafe {
            let n = libc::getgroups(0, std::ptr::null_mut());
            let mut v: Vec<libc::gid_t> = vec![0; n as usize];
            let n = libc::getgroups(n, v.as_mut_ptr());
            v.truncate(n as usize);
            v
        };
        let mut theirs = peer_groups(a.as_fd()).unwrap();
        ours.sort_unstable();
        theirs.sort_unstable();
        assert_eq!(theirs, ours);
    }

    #[test]
    fn a_users_groups_come_from_the_system() {
        assert_eq!(user_groups("root", 0).unwrap().unwrap()[0], "root");
        assert!(user_groups("root", 1)
            .unwrap()
            .unwrap()
            .iter()
            .all(|g| g != "root"));
        assert_eq!(user_groups("no-such-user-here", 0).unwrap(), None);
    }

    #[test]
    fn groups_are_looked_up_by_name() {
        assert_eq!(group_id("root").unwrap(), Some(0));
        assert_eq!(group_id("no-such-group-ocu").unwrap(), None);
        assert!(group_id("a\0b").is_err());
    }
}
