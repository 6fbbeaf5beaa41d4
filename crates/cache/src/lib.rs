//! dm-cache metadata, live: the kernel's dm-cache-metadata operations on top
//! of the persistent-data engine, in the kernel's on-disk format (metadata
//! versions 1 and 2).

pub mod audit;
pub mod check;
pub mod dump;
pub mod error;
pub mod format;
pub mod ir;
mod lost_sb;
pub mod metadata;
mod oblocks;
mod read;
pub mod restore;
mod scan;

pub use error::{CacheError, Result};
pub use format::mapping::Mapping;
pub use format::superblock::{Policy, Stats, Superblock};
pub use metadata::CacheMetadata;
