//! Per-block locks of the data path (dm-thin's bio prison, reduced to what
//! a synchronous server needs): a virtual block of a device is held shared
//! by readers or exclusively by one writer while its mapping is looked up,
//! its data moved and its new mapping inserted.
//!
//! Deadlock freedom: a request holds cells of one device only and takes
//! them in increasing block order; nothing waits for a cell while holding
//! the metadata lock.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

type Key = (u64, u64);

#[derive(Default)]
pub(crate) struct Cells {
    /// Holders per key: a positive count of readers, or -1 for a writer.
    held: Mutex<HashMap<Key, i64>>,
    released: Condvar,
}

/// A held cell; released on drop.
pub(crate) struct Cell<'a> {
    cells: &'a Cells,
    key: Key,
}

impl Cells {
    fn table(&self) -> MutexGuard<'_, HashMap<Key, i64>> {
        // A panic elsewhere cannot leave the table half-updated: every
        // change is one insert or remove.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn shared(&self, dev: u64, vblock: u64) -> Cell<'_> {
        let key = (dev, vblock);
        let mut t = self.table();
        while t.get(&key).is_some_and(|&n| n < 0) {
            t = self.released.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        *t.entry(key).or_insert(0) += 1;
        Cell { cells: self, key }
    }

    pub(crate) fn exclusive(&self, dev: u64, vblock: u64) -> Cell<'_> {
        let key = (dev, vblock);
        let mut t = self.table();
        while t.contains_key(&key) {
            t = self.released.wait(t).unwrap_or_else(|p| p.into_inner());
        }
        t.insert(key, -1);
        Cell { cells: self, key }
    }
}

impl Drop for Cell<'_> {
    fn drop(&mut self) {
        let mut t = self.cells.table();
        match t.get_mut(&self.key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                t.remove(&self.key);
            }
        }
        drop(t);
        self.cells.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn readers_share_writers_wait() {
        let c = Arc::new(Cells::default());
        let a = c.shared(1, 2);
        let b = c.shared(1, 2);
        let other = c.exclusive(1, 3);
        drop((a, b, other));
        let w = c.exclusive(1, 2);
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            let _r = c2.shared(1, 2);
        });
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!t.is_finished());
        drop(w);
        t.join().unwrap();
        assert!(c.table().is_empty());
    }
}
