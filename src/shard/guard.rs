//! A panic costs one connection, never a shard.
//!
//! Every task that serves one connection (a login, a CONNECT, a tunnel's
//! reader and writer, a DTLS channel) and every job on the blocking pool
//! runs inside [`contain`] or [`blocking`]: a panic there is caught, counted
//! and logged with its backtrace, and only that connection closes. A panic
//! anywhere else (a shard's own loops, the server's threads) would leave a
//! shard dead while the process limps on, its TUN queue unread: the panic
//! hook then ends the whole process with [`EXIT_PANIC`] at once, so the
//! service manager restarts it.

use std::backtrace::Backtrace;
use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use futures_lite::FutureExt;

use super::core::Shard;

/// The process's exit status after a panic it could not contain.
pub const EXIT_PANIC: i32 = 70;

thread_local! {
    /// Depth of contained code on this thread: a panic is caught above.
    static CONTAINED: Cell<u32> = const { Cell::new(0) };
}

/// Marks this thread as inside contained code while it lives.
struct Inside;

impl Inside {
    fn enter() -> Self {
        CONTAINED.with(|c| c.set(c.get() + 1));
        Self
    }
}

impl Drop for Inside {
    fn drop(&mut self) {
        CONTAINED.with(|c| c.set(c.get().saturating_sub(1)));
    }
}

/// `f`, with this thread marked as contained while it is polled.
struct Marked<F>(Pin<Box<F>>);

impl<F: Future> Future for Marked<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let _inside = Inside::enter();
        self.0.as_mut().poll(cx)
    }
}

/// A panic caught by [`contain`] or [`blocking`].
#[derive(Debug)]
pub(crate) struct Panicked;

/// Runs `f`; a panic in it is counted on `shard`, logged (the hook logged
/// the backtrace already) and returned as `Err`.
pub(crate) async fn contain<F: Future>(
    shard: &Shard,
    what: &'static str,
    f: F,
) -> Result<F::Output, Panicked> {
    match AssertUnwindSafe(Marked(Box::pin(f))).catch_unwind().await {
        Ok(v) => Ok(v),
        Err(_) => {
            shard.metrics().panics.inc();
            tracing::error!(shard = %shard.id, task = what, "a task serving one connection panicked: that connection is closed, the shard goes on");
            Err(Panicked)
        }
    }
}

/// The same for synchronous work on a shard's own loops (a datagram from
/// anyone, parsed where it arrives).
pub(crate) fn contain_now<R>(
    shard: &Shard,
    what: &'static str,
    f: impl FnOnce() -> R,
) -> Result<R, Panicked> {
    let _inside = Inside::enter();
    std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| {
        shard.metrics().panics.inc();
        tracing::error!(shard = %shard.id, task = what, "handling one datagram panicked: it is dropped, the shard goes on");
        Panicked
    })
}

/// Spawns `f` on this shard, contained.
pub(crate) fn spawn(shard: &Rc<Shard>, what: &'static str, f: impl Future<Output = ()> + 'static) {
    let s = shard.clone();
    glommio::spawn_local(async move {
        let _ = contain(&s, what, f).await;
    })
    .detach();
}

/// Runs `f` on the blocking pool; a panic in it is returned as `Err`.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, Panicked> {
    glommio::executor()
        .spawn_blocking(move || {
            let _inside = Inside::enter();
            std::panic::catch_unwind(AssertUnwindSafe(f)).map_err(|_| Panicked)
        })
        .await
}

/// Logs every panic with its backtrace; one outside contained code ends
/// the process.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        let location = info
            .location()
            .map_or_else(String::new, ToString::to_string);
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let backtrace = Backtrace::force_capture();
        let contained = CONTAINED.with(Cell::get) > 0;
        tracing::error!(thread, %location, %message, %backtrace, contained, "panic");
        if !contained {
            tracing::error!(thread, "a panic outside any one connection's task: exiting so the service manager restarts the server");
            std::process::exit(EXIT_PANIC);
        }
    }));
}
