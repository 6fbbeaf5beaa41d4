//! What a thin check found: the problems (the engine's [`Problems`], under
//! thin's sections) and a few figures.

use crate::format::device_details::DeviceDetails;
pub use pdata::check::{Problems, Severity};
use std::collections::BTreeMap;

/// The part of the metadata a problem is in; the tool prints problems under
/// these headings, in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Section {
    Superblock,
    Devices,
    Mappings,
    SpaceMaps,
}

impl pdata::check::Section for Section {
    fn index(self) -> usize {
        self as usize
    }
}

pub type Problem = pdata::check::Problem<Section>;

/// What a check found. The problems are reached through `Deref`
/// (`report.errors`, `report.is_clean()`, ...).
#[derive(Debug, Default)]
pub struct CheckReport {
    pub log: Problems<Section>,
    /// Devices of the live pool (of the metadata snapshot with `-m`).
    pub devices: BTreeMap<u64, DeviceDetails>,
    /// Mappings of those devices.
    pub nr_mappings: u64,
    /// Blocks with a non-zero count in each space map.
    pub metadata_blocks_in_use: u64,
    pub data_blocks_in_use: u64,
    pub transaction_id: u64,
    /// nr_blocks - nr_allocated of the metadata space map's root.
    pub metadata_free_blocks: u64,
    /// The superblock could be read and validated.
    pub superblock_ok: bool,
    /// Leaked blocks set free by the repair.
    pub repaired_leaks: u64,
    /// The space maps' counts were compared with the references found
    /// (not when damaged trees left those short).
    pub counts_compared: bool,
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
