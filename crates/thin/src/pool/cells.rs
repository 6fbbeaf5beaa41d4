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
struct Table {
    /// Holders per key: a positive count of readers, or -1 for a writer.
    held: HashMap<Key, i64>,
    /// Threads waiting for a cell: a release wakes them only if there are
    /// any (a wake is a syscall, and almost every release has none).
    waiters: usize,
}

#[derive(Default)]
pub(crate) struct Cells {
    table: Mutex<Table>,
    released: Condvar,
}

/// A held cell; released on drop.
pub(crate) struct Cell<'a> {
    cells: &'a Cells,
    key: Key,
}

impl Cells {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic elsewhere cannot leave the table half-updated: every
        // change is one insert or remove.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until `busy` is false for the table.
    fn wait_while<'a>(
        &'a self,
        mut t: MutexGuard<'a, Table>,
        busy: impl Fn(&Table) -> bool,
    ) -> MutexGuard<'a, Table> {
        while busy(&t) {
            t.waiters += 1;
            t = self.released.wait(t).unwrap_or_else(|p| p.into_inner());
            t.waiters -= 1;
        }
        t
    }

    pub(crate) fn shared(&self, dev: u64, vblock: u64) -> Cell<'_> {
        let key = (dev, vblock);
        let t = self.table();
        let mut t = self.wait_while(t, |t| t.held.get(&key).is_some_and(|&n| n < 0));
        *t.held.entry(key).or_insert(0) += 1;
        Cell { cells: self, key }
    }

    /// As `shared`, but None at once if a writer holds the cell.
    pub(crate) fn try_shared(&self, dev: u64, vblock: u64) -> Option<Cell<'_>> {
        let key = (dev, vblock);
        let mut t = self.table();
        let n = t.held.entry(key).or_insert(0);
        if *n < 0 {
            return None;
        }
        *n += 1;
        Some(Cell { cells: self, key })
    }

    pub(crate) fn exclusive(&self, dev: u64, vblock: u64) -> Cell<'_> {
        let key = (dev, vblock);
        let t = self.table();
        let mut t = self.wait_while(t, |t| t.held.contains_key(&key));
        t.held.insert(key, -1);
        Cell { cells: self, key }
    }
}

impl Drop for Cell<'_> {
    fn drop(&mut self) {
        let mut t = self.cells.table();
        match t.held.get_mut(&self.key) {
            Some(n) if *n > 1 => *n -= 1,
            _ => {
                t.held.remove(&self.key);
            }
        }
        let wake = t.waiters > 0;
        drop(t);
        if wake {
            self.cells.released.notify_all();
        }
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
        assert!(c.table().held.is_empty());
    }

    #[test]
    fn try_shared_declines_only_a_written_cell() {
        let c = Cells::default();
        let w = c.exclusive(1, 2);
        assert!(c.try_shared(1, 2).is_none());
        let r = c.try_shared(1, 3).expect("a free cell");
        let r2 = c.try_shared(1, 3).expect("readers share");
        drop(w);
        assert!(c.try_shared(1, 2).is_some());
        drop((r, r2));
        let t = c.table();
        assert!(t.held.is_empty() && t.waiters == 0);
    }
}
