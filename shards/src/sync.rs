//! The lock the cross-thread pieces of this crate take. Production uses
//! std's mutex; the loom models in `loom-tests/` plug in loom's, so they
//! check the code that ships.

use std::sync::{Mutex, PoisonError};

/// A value of type `T` behind a lock.
pub trait Lock<T>: Default {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R;
}

impl<T: Default> Lock<T> for Mutex<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        // Every closure given here changes the value in one step (an
        // insert, a remove, a swap), so a poisoned lock holds a whole value.
        let mut value = self.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut value)
    }
}
