//! The per-connection locks that make one refresh at a time in this process. Apart from the
//! refresh itself because the state holds them, and the state's parts never import the
//! state back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

/// Per-connection locks for in-process single flight.
#[derive(Default)]
pub struct RefreshLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl RefreshLocks {
    pub(super) fn lock_for(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().expect("refresh locks poisoned");
        if let Some(lock) = locks.get(id).and_then(Weak::upgrade) {
            return lock;
        }
        locks.retain(|_, weak| weak.strong_count() > 0);
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        locks.insert(id.to_owned(), Arc::downgrade(&lock));
        lock
    }
}
