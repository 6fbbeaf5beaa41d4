//! What a cache check found: the problems (the engine's [`Problems`] under
//! cache's sections), the oddities the kernel accepts, and a few figures.

pub use pdata::check::{Problems, Severity};

/// The part of the metadata a problem is in; the tool prints problems under
/// these headings, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Superblock,
    Mappings,
    Hints,
    Discards,
    Dirty,
    SpaceMap,
}

impl pdata::check::Section for Section {
    fn index(self) -> usize {
        self as usize
    }
}

pub type Problem = pdata::check::Problem<Section>;

/// Warnings kept (the rest are counted).
const MAX_ODD_SHOWN: usize = 20;

#[derive(Debug, Default)]
pub struct CheckReport {
    pub log: Problems<Section>,
    /// The superblock could be read and validated.
    pub superblock_ok: bool,
    pub version: u32,
    pub nr_cache_blocks: u32,
    pub nr_mapped: u64,
    pub nr_dirty: u64,
    /// Odd but accepted by the kernel (Debian 0.9.0 writes some of it):
    /// non-fatal, like leaks.
    pub odd: Vec<String>,
    pub nr_odd: u64,
    /// Worth saying, harmless (the exit status ignores them).
    pub notes: Vec<String>,
    pub repaired_leaks: u64,
    /// The space map's counts were compared with the references found.
    pub counts_compared: bool,
}

impl CheckReport {
    pub fn odd(&mut self, text: impl FnOnce() -> String) {
        self.nr_odd += 1;
        if self.odd.len() < MAX_ODD_SHOWN {
            self.odd.push(text());
        }
    }

    /// Nothing fatal, nothing leaked, nothing odd.
    pub fn is_clean(&self) -> bool {
        self.log.is_clean() && self.nr_odd == 0
    }
}

impl std::ops::Deref for CheckReport {
    type Target = Problems<Section>;
    fn deref(&self) -> &Self::Target {
        &self.log
    }
}

impl std::ops::DerefMut for CheckReport {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.log
    }
}
