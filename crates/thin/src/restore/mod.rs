//! Builds thin metadata in bulk from a [`Visitor`] event stream: the
//! writing half of `thin_restore`, and of `thin_repair`.
//!
//! The frame (block 0 zeroed first, the metadata space map, the superblock
//! last between two flushes, the too-small device) is the engine's
//! [`MetadataBuild`]. Inside it, in its layout: each device's mapping tree
//! written bottom-up as its runs arrive (leaves packed full), then the
//! details and top-level trees and the data space map.
//!
//! Memory: two node buffers per level of the tree being built, one row per
//! device, and the data counts (half a byte per data block in the bitmaps
//! in use) up to a budget: past it they are kept for a window of the data
//! blocks, and each later window is counted when its bitmaps are written,
//! from the mapping leaves read back (`finish`).
//! Each mapping counts once in the data space map (a dump does not say which
//! mappings share leaves), and no leaf is shared. As the Rust tools do, the
//! superblock gets version 2, flags 0 (needs_check cleared) and no
//! metadata snapshot, whatever the input says.

mod finish;

use crate::format::block_time::{MAX_DATA_BLOCK, MAX_TIME, TIME_BITS};
use crate::format::superblock::{data_block_size_error, valid_data_block_size};
use crate::ir::{PoolInfo, Run, Visitor};
use crate::{DeviceDetails, Result, ThinError};
use pdata::btree::TreeBuilder;
use pdata::build::{BuildError, MetadataBuild};
use pdata::io::BlockDevice;
use pdata::space_map::counts::WINDOW_BUDGET;
use pdata::space_map::RefCounts;
use rustc_hash::FxHashSet;
use std::sync::Arc;

// The frame writes the superblock where thin keeps it.
const _: () =
    assert!(crate::format::superblock::SUPERBLOCK_LOCATION == pdata::build::SUPERBLOCK_LOCATION);

/// Pool-wide values that replace those of the input (thin_restore's and
/// thin_repair's `--transaction-id`, `--data-block-size`, `--nr-data-blocks`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub transaction_id: Option<u64>,
    pub data_block_size: Option<u32>,
    pub nr_data_blocks: Option<u64>,
}

impl Overrides {
    /// `pool` with the values given here put in.
    pub fn apply(&self, pool: &PoolInfo) -> PoolInfo {
        let mut p = pool.clone();
        if let Some(t) = self.transaction_id {
            p.transaction_id = t;
        }
        if let Some(s) = self.data_block_size {
            p.data_block_size = s;
        }
        if let Some(n) = self.nr_data_blocks {
            p.nr_data_blocks = n;
        }
        p
    }
}

pub struct Restorer {
    dev: Arc<dyn BlockDevice>,
    overrides: Overrides,
    data_budget: usize,
    state: State,
}

enum State {
    Idle,
    Building(Box<Build>),
    Finished,
    /// An error ended the restore: nothing more is accepted.
    Failed,
}

/// Everything between `superblock_begin` and `superblock_end`.
struct Build {
    frame: MetadataBuild,
    pool: PoolInfo,
    /// The data counts, of the first window.
    counts: RefCounts,
    budget: usize,
    /// Where the mapping trees begin: every block from here to the details
    /// tree is a node of one.
    mappings_start: u64,
    /// Mappings restored.
    nr_mappings: u64,
    /// (id, details, mapping-tree root) of every finished device.
    devices: Vec<(u64, DeviceDetails, u64)>,
    ids: FxHashSet<u64>,
    current: Option<Device>,
}

/// The device whose runs are arriving.
struct Device {
    id: u64,
    details: DeviceDetails,
    tree: TreeBuilder,
    /// The lowest origin the next run may start at.
    next_origin: u64,
}

impl Restorer {
    pub fn new(dev: Arc<dyn BlockDevice>) -> Self {
        Restorer {
            dev,
            overrides: Overrides::default(),
            data_budget: WINDOW_BUDGET,
            state: State::Idle,
        }
    }

    pub fn with_overrides(mut self, overrides: Overrides) -> Self {
        self.overrides = overrides;
        self
    }

    /// Bytes the data counts may take (a smaller budget only means more
    /// windows: for tests).
    pub fn with_data_budget(mut self, budget: Option<usize>) -> Self {
        self.data_budget = budget.unwrap_or(WINDOW_BUDGET);
        self
    }

    /// Runs `f` on the build in progress; an error ends the restore.
    fn with_build<T>(&mut self, f: impl FnOnce(&mut Build) -> Result<T>) -> Result<T> {
        let State::Building(b) = &mut self.state else {
            return Err(invalid(match self.state {
                State::Idle => "no superblock before the devices",
                State::Finished => "input after the end of the superblock",
                _ => "the restore stopped at an earlier error",
            }));
        };
        let r = f(b);
        if r.is_err() {
            self.state = State::Failed;
        }
        r
    }
}

fn invalid(msg: impl Into<String>) -> ThinError {
    ThinError::Invalid(msg.into())
}

impl From<BuildError> for ThinError {
    fn from(e: BuildError) -> Self {
        match e {
            BuildError::Pdata(e) => ThinError::Pdata(e),
            e => invalid(e.to_string()),
        }
    }
}

impl Build {
    fn start(dev: Arc<dyn BlockDevice>, pool: PoolInfo, budget: usize) -> Result<Build> {
        // The kernel's rule, whether the size came from the XML or from
        // --data-block-size.
        if !valid_data_block_size(pool.data_block_size) {
            return Err(invalid(data_block_size_error(pool.data_block_size)));
        }
        if pool.nr_data_blocks > MAX_DATA_BLOCK + 1 {
            return Err(invalid(format!(
                "nr_data_blocks {} is too large: data block numbers must fit in 40 bits",
                pool.nr_data_blocks
            )));
        }
        let mut frame = MetadataBuild::start(dev)?;
        Ok(Build {
            mappings_start: frame.writer().next_location(),
            nr_mappings: 0,
            frame,
            counts: RefCounts::window(pool.nr_data_blocks, 0, budget)?,
            budget,
            pool,
            devices: Vec::new(),
            ids: FxHashSet::default(),
            current: None,
        })
    }

    fn run(&mut self, run: &Run) -> Result<()> {
        let Some(d) = self.current.as_mut() else {
            return Err(invalid("a mapping outside a device"));
        };
        let Run {
            origin,
            data,
            len,
            time,
        } = *run;
        let (Some(origin_end), Some(data_end)) = (origin.checked_add(len), data.checked_add(len))
        else {
            return Err(invalid(format!(
                "device {}: mapping length {len} overflows",
                d.id
            )));
        };
        if len == 0 {
            return Err(invalid(format!("device {}: a mapping of length 0", d.id)));
        }
        if origin < d.next_origin {
            return Err(invalid(format!(
                "device {}: mappings out of order or overlapping at block {origin}",
                d.id
            )));
        }
        let nr_data = self.pool.nr_data_blocks;
        if data_end > nr_data {
            return Err(ThinError::DataBlockOutOfRange {
                block: data.max(nr_data),
                nr_blocks: nr_data,
            });
        }
        if data_end - 1 > MAX_DATA_BLOCK {
            return Err(invalid(format!(
                "data block {} does not fit in 40 bits",
                data_end - 1
            )));
        }
        if time > MAX_TIME {
            return Err(invalid(format!(
                "mapping time {time} does not fit in 24 bits"
            )));
        }
        self.counts.inc_range(data, len)?;
        self.nr_mappings += len;
        let value = (data << TIME_BITS) | time as u64;
        d.tree
            .push_u64_run(self.frame.writer(), origin, len, value, 1 << TIME_BITS)?;
        d.next_origin = origin_end;
        Ok(())
    }
}

impl Visitor for Restorer {
    fn superblock_begin(&mut self, pool: &PoolInfo) -> Result<()> {
        if !matches!(self.state, State::Idle) {
            return Err(invalid("a second superblock"));
        }
        self.state = State::Failed;
        let pool = self.overrides.apply(pool);
        let build = Build::start(self.dev.clone(), pool, self.data_budget)?;
        self.state = State::Building(Box::new(build));
        Ok(())
    }

    fn device_begin(&mut self, dev_id: u64, details: &DeviceDetails) -> Result<()> {
        self.with_build(|b| {
            if let Some(d) = &b.current {
                return Err(invalid(format!(
                    "device {dev_id} begins inside device {}",
                    d.id
                )));
            }
            if !b.ids.insert(dev_id) {
                return Err(invalid(format!("device {dev_id} appears twice")));
            }
            b.current = Some(Device {
                id: dev_id,
                details: *details,
                tree: TreeBuilder::new(8),
                next_origin: 0,
            });
            Ok(())
        })
    }

    fn run(&mut self, run: &Run) -> Result<()> {
        self.with_build(|b| b.run(run))
    }

    fn device_end(&mut self) -> Result<()> {
        self.with_build(|b| {
            let d = b
                .current
                .take()
                .ok_or_else(|| invalid("the end of a device that did not begin"))?;
            let root = d.tree.finish(b.frame.writer())?;
            b.devices.push((d.id, d.details, root));
            Ok(())
        })
    }

    fn superblock_end(&mut self) -> Result<()> {
        self.with_build(|b| match &b.current {
            Some(d) => Err(invalid(format!("device {} has no end", d.id))),
            None => Ok(()),
        })?;
        // Failed until the superblock is written.
        if let State::Building(b) = std::mem::replace(&mut self.state, State::Failed) {
            finish::finish(*b)?;
            self.state = State::Finished;
        }
        Ok(())
    }
}
