//! The signals the server handles: SIGTERM and SIGINT (stop), SIGHUP
//! (reload). They are blocked in every thread, and one thread takes them
//! with `sigwait`, so no handler ever runs on a shard.

/// SIGTERM, SIGINT and SIGHUP.
fn handled() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Blocks the handled signals in this thread and every thread it spawns
/// from now on.
pub fn block_handled() {
    let set = handled();
    // SAFETY: pthread_sigmask with a valid set and no old-set output.
    unsafe {
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Waits for one of the handled signals (blocked first: `block_handled`).
pub fn wait_handled() -> i32 {
    let set = handled();
    let mut sig = 0;
    // SAFETY: sigwait on a valid set, filling `sig`.
    unsafe { libc::sigwait(&set, &mut sig) };
    sig
}
