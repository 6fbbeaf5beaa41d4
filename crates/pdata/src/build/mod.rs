//! Building a whole metadata device in bulk, without the transaction
//! manager: the frame every client's restore shares (thin's today, cache's
//! and era's next). The client writes its structures through the frame's
//! [`BatchWriter`] (trees with `btree::TreeBuilder`, space maps with
//! `space_map::builder`) and packs its own superblock; the frame owns the
//! rest:
//!
//! * the layout of a fresh kernel format: the superblock at block 0, the
//!   metadata space map's index block, overflow root and bitmaps after it,
//!   then the client's blocks in increasing locations, in 1 MiB batches;
//! * block 0 zeroed first, so an interrupted build leaves no superblock
//!   pointing at half-written blocks, and the superblock written last,
//!   between two flushes;
//! * the metadata space map of a device filled sequentially (every block
//!   below the last one written counted once);
//! * the too-small device: past its end nothing is written but the pass
//!   goes on, and the error names the exact size needed.

mod frame;

pub use frame::{BuildError, MetadataBuild, SUPERBLOCK_LOCATION};
