//! A value a reload replaces while readers keep the one they took.

use std::sync::{Arc, PoisonError, RwLock};

/// Read at logins, CONNECTs and admin commands, never per packet: an
/// uncontended read lock there costs nothing anyone could measure.
pub struct Live<T>(RwLock<Arc<T>>);

impl<T> Live<T> {
    pub fn new(v: Arc<T>) -> Self {
        Self(RwLock::new(v))
    }

    /// The current value; it stays valid for the holder after a reload.
    pub fn get(&self) -> Arc<T> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, v: Arc<T>) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = v;
    }
}
