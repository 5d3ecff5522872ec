//! The server's system calls and most of its `unsafe`: TUN ioctls, the
//! bpf() syscall, io_uring, socket options, peer credentials and group
//! look-ups. Descriptors leave here as `OwnedFd`; [`adopt`] hands one to a
//! type that only takes raw descriptors (glommio's), so no `unsafe` is
//! needed for that elsewhere.

pub mod activation;
pub mod bpf;
mod bufring;
pub mod creds;
mod doorbell;
pub mod net;
pub mod pam;
pub mod privs;
pub mod reuseport;
pub mod signals;
pub mod tun;
mod txring;
pub mod uring;

use std::io;
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};

/// Gives an owned descriptor to a type built from raw ones (glommio's
/// sockets and files): ownership moves, so it is closed once, by `T`.
pub fn adopt<T: FromRawFd>(fd: OwnedFd) -> T {
    // SAFETY: `fd` is open and ours; into_raw_fd gives that ownership up,
    // and `T` takes it over (closing it when dropped).
    unsafe { T::from_raw_fd(fd.into_raw_fd()) }
}

/// A second descriptor for the same open file (one per task direction).
pub fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a caller-provided fd; the result is new.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Lifts the soft open-file limit to the hard one (what a service
/// manager's LimitNOFILE does) and returns the limit now in force.
pub fn raise_nofile() -> io::Result<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read or write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return Err(io::Error::last_os_error());
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &r) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(r.rlim_cur)
}

/// Lowers the calling thread's priority (nice 10) so login work on the
/// blocking pool yields the CPU to the packet path.
pub fn lower_thread_priority() {
    thread_local!(static DONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) });
    if DONE.with(|d| d.replace(true)) {
        return;
    }
    // SAFETY: gettid has no preconditions; setpriority on our own thread id.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// Turns terminal echo on stdin on or off; false if stdin is no terminal.
pub fn set_stdin_echo(on: bool) -> bool {
    // SAFETY: tcgetattr/tcsetattr on fd 0 with a termios we own.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return false;
        }
        if on {
            t.c_lflag |= libc::ECHO;
        } else {
            t.c_lflag &= !libc::ECHO;
        }
        libc::tcsetattr(0, libc::TCSANOW, &t) == 0
    }
}

/// Sends SIGKILL to every process of the process group `pgid`: a script
/// started as a group leader, and whatever it left running.
pub fn kill_process_group(pgid: u32) -> io::Result<()> {
    // 0 would be our own group and 1 (as -1) every process we may signal.
    let pgid = libc::pid_t::try_from(pgid)
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill() takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for a POSIX write lock on the whole of `file` (fcntl F_SETLKW),
/// the lock liboath takes on an oath users file's `.lock`; it goes with
/// the descriptor.
pub fn lock_posix(file: &std::fs::File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed flock is a valid "whole file" range; F_SETLKW only
    // reads it.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = libc::F_WRLCK as libc::c_short;
    l.l_whence = libc::SEEK_SET as libc::c_short;
    loop {
        // SAFETY: fcntl on a descriptor `file` owns, with a flock we own.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETLKW, &l) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Tries once to take an exclusive `flock` on `file` (it goes with the
/// descriptor): `Ok(false)` if another process holds it.
pub fn try_flock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor `file` owns.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == io::ErrorKind::WouldBlock {
        Ok(false)
    } else {
        Err(e)
    }
}

/// A local date and time: year, month (1-12), day, hour, minute, second.
pub type LocalTime = (i32, u32, u32, u32, u32, u32);

/// Unix seconds as the local time (localtime_r).
pub fn local_time(unix: i64) -> Option<LocalTime> {
    let t = libc::time_t::try_from(unix).ok()?;
    // SAFETY: a zeroed tm is valid; localtime_r writes only into it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to locals of the right types.
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return None;
    }
    Some((
        tm.tm_year + 1900,
        u32::try_from(tm.tm_mon + 1).ok()?,
        u32::try_from(tm.tm_mday).ok()?,
        u32::try_from(tm.tm_hour).ok()?,
        u32::try_from(tm.tm_min).ok()?,
        u32::try_from(tm.tm_sec).ok()?,
    ))
}

/// A local time as Unix seconds (mktime, daylight saving as the zone says).
pub fn from_local_time((y, mo, d, h, mi, s): LocalTime) -> Option<i64> {
    // SAFETY: a zeroed tm is valid; mktime reads and normalises it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = y - 1900;
    tm.tm_mon = i32::try_from(mo).ok()? - 1;
    tm.tm_mday = i32::try_from(d).ok()?;
    tm.tm_hour = i32::try_from(h).ok()?;
    tm.tm_min = i32::try_from(mi).ok()?;
    tm.tm_sec = i32::try_from(s).ok()?;
    tm.tm_isdst = -1;
    // SAFETY: mktime reads and writes only the tm we own.
    let t = unsafe { libc::mktime(&mut tm) };
    (t != -1).then_some(t)
}
