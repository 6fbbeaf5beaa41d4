//! The devices tree against the mapping tree: the same devices in both, and
//! each device's mapped_blocks equal to the mappings its tree holds.

use super::report::Section;
use super::trees::{detail_entries, top_entries, Tree, Walker};
use crate::format::device_details::DeviceDetails;
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;

/// Checks the devices of the live pool or of the metadata snapshot (`snap`)
/// whose trees have these roots; returns them and their number of mappings
/// (counted when `count_mappings`, as the walk followed the mapping trees).
pub fn check(
    w: &mut Walker,
    snap: bool,
    details_root: u64,
    top_root: u64,
    count_mappings: bool,
) -> (BTreeMap<u64, DeviceDetails>, u64) {
    let prefix = if snap { "metadata snapshot: " } else { "" };
    let details: BTreeMap<u64, DeviceDetails> =
        detail_entries(w, details_root).into_iter().collect();
    let roots: BTreeMap<u64, u64> = top_entries(w, top_root).into_iter().collect();
    for dev in details.keys().filter(|d| !roots.contains_key(d)) {
        w.problems.fatal(
            Section::Devices,
            format!("{prefix}device {dev} is in the devices tree but has no mapping tree"),
        );
    }
    for dev in roots.keys().filter(|d| !details.contains_key(d)) {
        w.problems.fatal(
            Section::Devices,
            format!("{prefix}device {dev} has a mapping tree but is not in the devices tree"),
        );
    }
    let mut total = 0;
    if count_mappings {
        let mut memo = FxHashMap::default();
        for (dev, root) in &roots {
            let Some(n) = w.entries_below(*root, Tree::Bottom, &mut memo) else {
                continue;
            };
            total += n;
            if let Some(d) = details.get(dev).filter(|d| d.mapped_blocks != n) {
                w.problems.fatal(
                    Section::Devices,
                    format!(
                        "{prefix}device {dev}: mapped_blocks is {}, but its mapping tree holds {n}",
                        d.mapped_blocks
                    ),
                );
            }
        }
    }
    (details, total)
}
