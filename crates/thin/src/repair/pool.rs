//! The pool-wide fields of a recovered pool: from the superblock when it
//! validates, else from what survives of it (a damaged copy, a metadata
//! snapshot's copy), the user's overrides, and what the trees show.

use super::RepairOptions;
use crate::format::block_time::MAX_DATA_BLOCK;
use crate::format::superblock::{
    data_block_size_error, has_thin_magic, read_block, valid_data_block_size, Superblock,
    SUPERBLOCK_LOCATION, THIN_VERSION,
};
use crate::ir::PoolInfo;
use crate::{Result, ThinError};
use pdata::io::BlockDevice;

/// Block 0 as found.
pub(crate) enum SuperblockState {
    Valid(Superblock),
    /// Thin magic, but it fails validation: every field is a hint.
    Damaged(Superblock, String),
    Lost(String),
}

impl SuperblockState {
    pub fn read(dev: &dyn BlockDevice) -> Self {
        let loc = SUPERBLOCK_LOCATION;
        let b = match read_block(dev, loc) {
            Ok(b) => b,
            Err(e) => return SuperblockState::Lost(format!("cannot read it: {e}")),
        };
        // Not `decode`: a zeroed block is lost like any block without the
        // magic, and worded as the engine words it.
        match Superblock::validate(loc, &b) {
            Ok(()) => SuperblockState::Valid(Superblock::unpack(&b)),
            Err(e) if has_thin_magic(&b) => {
                SuperblockState::Damaged(Superblock::unpack(&b), e.at(loc).to_string())
            }
            Err(e) => SuperblockState::Lost(e.at(loc).to_string()),
        }
    }

    /// The superblock whose fields are worth trying.
    pub fn fields(&self) -> Option<&Superblock> {
        match self {
            SuperblockState::Valid(sb) | SuperblockState::Damaged(sb, _) => Some(sb),
            SuperblockState::Lost(_) => None,
        }
    }

    fn valid(&self) -> Option<&Superblock> {
        match self {
            SuperblockState::Valid(sb) => Some(sb),
            _ => None,
        }
    }
}

/// What the recovered trees show.
#[derive(Debug, Default)]
pub(crate) struct Observed {
    /// The highest data block mapped, if any.
    pub max_block: Option<u64>,
    /// The newest time in mappings and details.
    pub max_time: u32,
    /// The highest transaction id in the details.
    pub max_details_transaction: Option<u64>,
}

/// The pool fields. `copies` are superblocks of metadata snapshots found
/// by a scan, newest transaction first.
pub(crate) fn pool_info(
    sb: &SuperblockState,
    copies: &[Superblock],
    opts: &RepairOptions,
    seen: &Observed,
    warn: &mut dyn FnMut(String),
) -> Result<PoolInfo> {
    let valid = sb.valid();
    let damaged = match sb {
        SuperblockState::Damaged(sb, _) => Some(sb),
        _ => None,
    };
    let hint = damaged.or(copies.first());
    let from = if damaged.is_some() {
        "taken from the damaged superblock"
    } else {
        "taken from a metadata snapshot's copy of the superblock"
    };

    let data_block_size = match (opts.data_block_size, valid) {
        (Some(s), _) => s,
        (None, Some(sb)) if valid_data_block_size(sb.data_block_size) => sb.data_block_size,
        _ => match hint.filter(|h| valid_data_block_size(h.data_block_size)) {
            Some(h) => {
                warn(format!(
                    "data block size {} {from} (give --data-block-size to override)",
                    h.data_block_size
                ));
                h.data_block_size
            }
            None => return Err(ThinError::Invalid(
                "the data block size is lost with the superblock: give it with --data-block-size"
                    .into(),
            )),
        },
    };
    if !valid_data_block_size(data_block_size) {
        return Err(ThinError::Invalid(data_block_size_error(data_block_size)));
    }

    let needed = seen.max_block.map_or(0, |b| b + 1);
    let nr_data_blocks = match (opts.nr_data_blocks, valid) {
        (Some(n), _) => n,
        (None, Some(sb)) => sb.data_sm_root.nr_blocks,
        _ => {
            let hinted = hint
                .map(|h| h.data_sm_root.nr_blocks)
                .filter(|&n| n <= MAX_DATA_BLOCK + 1)
                .unwrap_or(0);
            let how = if hinted >= needed && hinted > 0 {
                from
            } else {
                "inferred from the highest block mapped"
            };
            let n = hinted.max(needed);
            warn(format!(
                "pool size {n} data blocks {how} (give --nr-data-blocks to override)"
            ));
            n
        }
    };

    let time = match valid {
        Some(sb) => sb.time,
        None => hint.map_or(0, |h| h.time).max(seen.max_time),
    };

    let transaction_id = match (opts.transaction_id, valid, damaged) {
        (Some(t), _, _) => t,
        (None, Some(sb), _) => sb.transaction_id,
        (None, None, Some(sb)) => {
            warn(format!(
                "transaction id {} {from} (give --transaction-id to override)",
                sb.transaction_id
            ));
            sb.transaction_id
        }
        (None, None, None) => {
            // A device's transaction is at most the pool's at its last change.
            let t = seen
                .max_details_transaction
                .map_or(0, |t| t + 1)
                .max(copies.first().map_or(0, |c| c.transaction_id));
            warn(format!(
                "transaction id {t} inferred from the device details (give --transaction-id to override)"
            ));
            t
        }
    };

    Ok(PoolInfo {
        uuid: String::new(),
        time,
        transaction_id,
        // needs_check is cleared: the result is consistent.
        flags: 0,
        version: THIN_VERSION,
        data_block_size,
        nr_data_blocks,
        metadata_snap: None,
    })
}
