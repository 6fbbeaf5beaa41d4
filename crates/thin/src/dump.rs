//! Walks committed metadata (the live roots or a metadata snapshot's) and
//! feeds it to a [`Visitor`]: the reading half of `thin_dump`.

use crate::ir::{PoolInfo, RunJoiner, Visitor};
use crate::progress::{NoProgress, ProgressHook};
use crate::restore::Overrides;
use crate::{Result, ThinError, ThinMetadata};
use pdata::btree::node::{Node, NODE_VALIDATOR};
use pdata::io::will_need_sorted;
use pdata::live::LiveMetadata;

/// Deepest tree [`will_need_tree`] descends (a B-tree of 2^64 keys is far
/// shallower).
const MAX_LEVELS: usize = 16;

/// What to walk.
#[derive(Debug, Clone, Default)]
pub struct DumpOptions {
    /// Walk the metadata snapshot instead of the live roots.
    pub metadata_snap: bool,
    /// Only these devices (all when empty).
    pub dev_ids: Vec<u64>,
    /// Devices only, no mappings.
    pub skip_mappings: bool,
    /// Pool-wide values printed instead of those read (1.x takes
    /// `--transaction-id`, `--data-block-size`, `--nr-data-blocks` without
    /// `--repair` too).
    pub overrides: Overrides,
}

fn roots(md: &ThinMetadata, opts: &DumpOptions) -> Result<crate::format::superblock::Superblock> {
    if opts.metadata_snap {
        md.metadata_snap()?.ok_or(ThinError::NoSnapshot)
    } else {
        Ok(md.superblock().clone())
    }
}

pub fn dump(md: &ThinMetadata, opts: &DumpOptions, out: &mut dyn Visitor) -> Result<()> {
    dump_with_progress(md, opts, out, &NoProgress)
}

/// `dump`, telling `progress` the number of mappings to come (the devices'
/// `mapped_blocks`) once the devices are known; the visitor counts them.
pub fn dump_with_progress(
    md: &ThinMetadata,
    opts: &DumpOptions,
    out: &mut dyn Visitor,
    progress: &dyn ProgressHook,
) -> Result<()> {
    let live = md.superblock().clone();
    let sb = roots(md, opts)?;
    let mut devices = md.devices_at(sb.data_mapping_root, sb.device_details_root)?;
    devices.retain(|(id, _, _)| opts.dev_ids.is_empty() || opts.dev_ids.contains(id));
    progress.set_total(devices.iter().map(|(_, d, _)| d.mapped_blocks).sum());
    out.superblock_begin(&opts.overrides.apply(&PoolInfo {
        uuid: String::new(),
        time: sb.time,
        transaction_id: sb.transaction_id,
        flags: sb.flags,
        version: sb.version,
        data_block_size: sb.data_block_size,
        // A snapshot's space-map roots are zero: the size is the live pool's.
        nr_data_blocks: live.data_sm_root.nr_blocks,
        metadata_snap: None,
    }))?;
    for (id, details, root) in devices {
        out.device_begin(id, &details)?;
        if !opts.skip_mappings {
            will_need_tree(md, root);
            let mut joiner = RunJoiner::new();
            let mut failed = None;
            md.walk_subtree(root, &mut |v, b, t| {
                if let Some(r) = joiner.push(v, b, t) {
                    if let Err(e) = out.run(&r) {
                        failed = Some(e);
                        return Err(pdata::Error::Invalid("output failed".into()));
                    }
                }
                Ok(())
            })
            .map_err(|e| failed.take().unwrap_or(e))?;
            if let Some(r) = joiner.finish() {
                out.run(&r)?;
            }
        }
        out.device_end()?;
    }
    out.superblock_end()
}

/// Asks the kernel to read the whole tree under `root` ahead of the
/// depth-first walk, one level at a time: the internal levels are read here
/// (a small fraction of the tree), the leaves only hinted, so that a cold
/// dump reads at the device's pace rather than one node's children at a
/// time. A hint only: any damage is left for the walk to report.
fn will_need_tree(md: &ThinMetadata, root: u64) {
    let tm = md.transaction_manager();
    let dev = tm.bm().device().as_ref();
    let mut level = vec![root];
    for _ in 0..MAX_LEVELS {
        level.sort_unstable();
        level.dedup();
        will_need_sorted(dev, level.iter().copied());
        // Every leaf is at the same depth: one node tells whether this is
        // the leaf level, which is hinted but not read.
        let is_leaf = |loc: u64| {
            tm.bm()
                .read_lock(loc, &NODE_VALIDATOR)
                .map_or(true, |b| Node(&b).is_leaf())
        };
        if level.first().is_none_or(|&loc| is_leaf(loc)) {
            return;
        }
        let mut next = Vec::new();
        for &loc in &level {
            if let Ok(b) = tm.bm().read_lock(loc, &NODE_VALIDATOR) {
                let n = Node(&b);
                if !n.is_leaf() {
                    next.extend((0..n.nr_entries()).map(|i| n.value_u64(i)));
                }
            }
        }
        level = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::device_details::DeviceDetails;
    use crate::ir::Run;
    use pdata::io::{BlockDevice, MemoryDevice};
    use pdata::Block;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    /// Blocks hinted, and blocks read before any hint covered them.
    #[derive(Default)]
    struct Seen {
        hinted: BTreeSet<u64>,
        read_unhinted: BTreeSet<u64>,
    }

    struct Hints {
        inner: MemoryDevice,
        seen: Mutex<Seen>,
    }

    impl BlockDevice for Hints {
        fn nr_blocks(&self) -> u64 {
            self.inner.nr_blocks()
        }
        fn read_blocks(&self, first: u64, bufs: &mut [&mut Block]) -> std::io::Result<()> {
            let mut s = self.seen.lock().unwrap();
            for b in first..first + bufs.len() as u64 {
                if !s.hinted.contains(&b) {
                    s.read_unhinted.insert(b);
                }
            }
            self.inner.read_blocks(first, bufs)
        }
        fn write_blocks(&self, first: u64, bufs: &[&Block]) -> std::io::Result<()> {
            self.inner.write_blocks(first, bufs)
        }
        fn flush(&self) -> std::io::Result<()> {
            self.inner.flush()
        }
        fn will_need(&self, first: u64, count: u64) {
            self.seen
                .lock()
                .unwrap()
                .hinted
                .extend(first..first + count);
        }
    }

    struct Nothing;

    impl Visitor for Nothing {
        fn superblock_begin(&mut self, _: &PoolInfo) -> Result<()> {
            Ok(())
        }
        fn device_begin(&mut self, _: u64, _: &DeviceDetails) -> Result<()> {
            Ok(())
        }
        fn run(&mut self, _: &Run) -> Result<()> {
            Ok(())
        }
        fn device_end(&mut self) -> Result<()> {
            Ok(())
        }
        fn superblock_end(&mut self) -> Result<()> {
            Ok(())
        }
    }

    /// A cold dump has the whole of a device's tree in flight before it
    /// reads it: every node is hinted before its first read.
    #[test]
    fn every_node_is_hinted_before_it_is_read() {
        let dev = Arc::new(Hints {
            inner: MemoryDevice::new(4096),
            seen: Mutex::default(),
        });
        let mut md = ThinMetadata::format(dev.clone(), 128, 1 << 20, false).unwrap();
        md.create_thin(1).unwrap();
        // Three levels: about 130 leaves of scattered keys.
        for k in 0..30_000u64 {
            md.provision(1, k * 7919 % 1_000_003).unwrap();
        }
        md.commit().unwrap();
        drop(md);
        let md = ThinMetadata::open_with_cache(dev.clone(), false, 16).unwrap();
        let mut nodes = Vec::new();
        let root = md
            .devices_at(
                md.superblock().data_mapping_root,
                md.superblock().device_details_root,
            )
            .unwrap()[0]
            .2;
        pdata::btree::walk_nodes(md.transaction_manager(), root, &mut |loc, _, _| {
            nodes.push(loc);
            Ok(())
        })
        .unwrap();
        assert!(nodes.len() > 100);
        *dev.seen.lock().unwrap() = Seen::default();
        dump(&md, &DumpOptions::default(), &mut Nothing).unwrap();
        let seen = dev.seen.lock().unwrap();
        let leaves_unhinted: Vec<_> = nodes
            .iter()
            .skip(1)
            .filter(|n| seen.read_unhinted.contains(n))
            .collect();
        assert!(leaves_unhinted.is_empty(), "{leaves_unhinted:?}");
        assert!(nodes.iter().all(|n| seen.hinted.contains(n)));
    }
}
