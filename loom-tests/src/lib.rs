//! loom models of the cross-thread protocols in `shards/` live in `tests/`:
//! each runs the production type over loom's atomics and locks through the
//! `shards` traits, so the model checks the code that ships.

/// loom's mutex behind the lock trait the production types take.
#[derive(Default)]
pub struct LoomLock<T>(loom::sync::Mutex<T>);

impl<T: Default> shards::sync::Lock<T> for LoomLock<T> {
    fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.0.lock().unwrap())
    }
}
