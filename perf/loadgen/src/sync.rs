//! Single-thread wakeups for the tasks of one runtime.

use std::cell::{Cell, RefCell};
use std::task::{Context, Poll, Waker};

/// Wakes one waiting task; a notification before the wait is kept.
#[derive(Default)]
pub(crate) struct Notify {
    flag: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Notify {
    pub(crate) fn notify(&self) {
        self.flag.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.flag.replace(false) {
            Poll::Ready(())
        } else {
            self.waker.set(Some(cx.waker().clone()));
            Poll::Pending
        }
    }
}

/// Opens once and wakes everyone waiting: the end of the ramp.
#[derive(Default)]
pub(crate) struct Gate {
    open: Cell<bool>,
    waiters: RefCell<Vec<Waker>>,
}

impl Gate {
    pub(crate) fn open(&self) {
        self.open.set(true);
        for w in self.waiters.take() {
            w.wake();
        }
    }

    pub(crate) fn is_open(&self) -> bool {
        self.open.get()
    }

    /// Ready once open; else registers the task.
    pub(crate) fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.open.get() {
            Poll::Ready(())
        } else {
            self.waiters.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}
