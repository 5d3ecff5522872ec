//! Anti-replay window of RFC 6347 §4.1.2.6: 64 sequence numbers wide,
//! checked before decryption and advanced only after a record authenticates,
//! so forged records cannot move it.

/// Window width in records (RFC 6347 §4.1.2.6 suggests at least 32).
pub(crate) const WINDOW: u64 = 64;

/// Why a sequence number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Already received.
    Duplicate,
    /// Left of the window: too old to tell.
    TooOld,
}

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ReplayWindow {
    /// Highest sequence number accepted so far (valid when `seen`).
    top: u64,
    /// Bit `i` set = `top - i` was received.
    bits: u64,
    seen: bool,
}

impl ReplayWindow {
    pub(crate) fn check(&self, seq: u64) -> Result<(), Reject> {
        if !self.seen || seq > self.top {
            return Ok(());
        }
        let back = self.top - seq;
        if back >= WINDOW {
            Err(Reject::TooOld)
        } else if self.bits & (1 << back) != 0 {
            Err(Reject::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Records `seq` as received; call only after `check` passed and the
    /// record authenticated.
    pub(crate) fn mark(&mut self, seq: u64) {
        if !self.seen {
            (self.top, self.bits, self.seen) = (seq, 1, true);
        } else if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= WINDOW {
                1
            } else {
                (self.bits << shift) | 1
            };
            self.top = seq;
        } else {
            let back = self.top - seq;
            if back < WINDOW {
                self.bits |= 1 << back;
            }
        }
    }

    /// `check` then `mark`.
    #[cfg(test)]
    pub(crate) fn accept(&mut self, seq: u64) -> Result<(), Reject> {
        self.check(seq)?;
        self.mark(seq);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_and_duplicates() {
        let mut w = ReplayWindow::default();
        for s in 0..200 {
            assert_eq!(w.accept(s), Ok(()));
            assert_eq!(w.check(s), Err(Reject::Duplicate));
        }
        assert_eq!(w.check(199 - 63), Err(Reject::Duplicate));
        assert_eq!(w.check(199 - 64), Err(Reject::TooOld));
        assert_eq!(w.check(0), Err(Reject::TooOld));
    }

    #[test]
    fn out_of_order_inside_window() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(10), Ok(()));
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(5), Err(Reject::Duplicate));
        assert_eq!(w.accept(7), Ok(()));
        assert_eq!(w.accept(11), Ok(()));
        assert_eq!(w.accept(7), Err(Reject::Duplicate));
        assert_eq!(w.accept(6), Ok(()));
        // Window is 64 wide: 11 - 63 = -52, so everything from 0 is still inside.
        assert_eq!(w.accept(0), Ok(()));
    }

    #[test]
    fn far_future_jump_forgets_the_past() {
        let mut w = ReplayWindow::default();
        for s in 0..10 {
            w.accept(s).unwrap();
        }
        let far = (1u64 << 48) - 1;
        assert_eq!(w.accept(far), Ok(()));
        assert_eq!(w.check(far), Err(Reject::Duplicate));
        assert_eq!(w.check(far - 1), Ok(()));
        assert_eq!(w.check(far - 63), Ok(()));
        assert_eq!(w.check(far - 64), Err(Reject::TooOld));
        assert_eq!(w.check(5), Err(Reject::TooOld));
        // A jump of exactly the window width keeps only the new bit.
        let mut w = ReplayWindow::default();
        w.accept(100).unwrap();
        w.accept(164).unwrap();
        assert_eq!(w.check(100), Err(Reject::TooOld));
        assert_eq!(w.check(101), Ok(()));
        // A jump of 63 keeps the old top at the window's left edge.
        let mut w = ReplayWindow::default();
        w.accept(100).unwrap();
        w.accept(163).unwrap();
        assert_eq!(w.check(100), Err(Reject::Duplicate));
    }

    #[test]
    fn check_does_not_mark() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.check(3), Ok(()));
        assert_eq!(w.check(3), Ok(()));
        w.mark(3);
        assert_eq!(w.check(3), Err(Reject::Duplicate));
    }
}
