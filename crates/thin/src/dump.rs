//! Walks committed metadata (the live roots or a metadata snapshot's) and
//! feeds it to a [`Visitor`]: the reading half of `thin_dump`.

use crate::ir::{PoolInfo, RunJoiner, Visitor};
use crate::progress::{NoProgress, ProgressHook};
use crate::restore::Overrides;
use crate::{Result, ThinError, ThinMetadata};

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
