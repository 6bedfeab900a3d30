//! Data shared between threads: the one way a lock is taken.

use std::sync::{Mutex, MutexGuard};

/// The data behind `mutex`, also after a thread panicked while holding it (the appliance goes on
/// with what is there rather than stopping).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
