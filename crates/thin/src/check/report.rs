//! What a check found: problems by section and severity, and a few figures.

use crate::format::device_details::DeviceDetails;
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Damage: anything but a leak.
    Fatal,
    /// A block counted 1 in a space map but referenced by nothing.
    Leak,
}

#[derive(Debug, Clone)]
pub struct Problem {
    pub section: Section,
    pub severity: Severity,
    pub text: String,
}

/// Messages kept per severity; the rest are only counted.
const MAX_FATAL_SHOWN: usize = 100;
const MAX_LEAKS_SHOWN: usize = 20;

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// The problems found, in the order found (the first
    /// `MAX_*_SHOWN` of each severity; leaks are also summed up per map).
    pub problems: Vec<Problem>,
    /// All fatal problems, shown or not.
    pub nr_fatal: u64,
    /// Fatal problems by section, shown or not.
    pub fatal_by_section: [u64; 4],
    /// All leaked blocks, shown or not.
    pub nr_leaks: u64,
    /// Texts of the fatal problems kept.
    pub errors: Vec<String>,
    /// Texts of the leak problems kept.
    pub leaks: Vec<String>,
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

impl CheckReport {
    /// No problem at all.
    pub fn is_clean(&self) -> bool {
        self.nr_fatal == 0 && self.nr_leaks == 0
    }

    /// Nothing but leaks (or nothing).
    pub fn is_sound(&self) -> bool {
        self.nr_fatal == 0
    }

    pub(super) fn fatal(&mut self, section: Section, text: impl Into<String>) {
        self.nr_fatal += 1;
        self.fatal_by_section[section as usize] += 1;
        if self.errors.len() < MAX_FATAL_SHOWN {
            let text = text.into();
            self.errors.push(text.clone());
            self.problems.push(Problem {
                section,
                severity: Severity::Fatal,
                text,
            });
        }
    }

    /// One leaked block; `text` is only built while leaks are still shown.
    pub(super) fn leak(&mut self, text: impl FnOnce() -> String) {
        self.nr_leaks += 1;
        if self.leaks.len() < MAX_LEAKS_SHOWN {
            self.push_leak_text(text());
        }
    }

    /// A leak summary line (not counted again).
    pub(super) fn push_leak_text(&mut self, text: String) {
        self.leaks.push(text.clone());
        self.problems.push(Problem {
            section: Section::SpaceMaps,
            severity: Severity::Leak,
            text,
        });
    }

    /// Fatal problems not kept (beyond the shown ones).
    pub fn nr_hidden(&self) -> u64 {
        self.nr_fatal.saturating_sub(self.errors.len() as u64)
    }
}
