//! dm-era metadata, live: the kernel's dm-era-target operations on top of
//! the persistent-data engine, in the kernel's on-disk format (version 1).
//! Which origin blocks were written in which era: the current writeset,
//! the archived writesets (a B-tree keyed by era) and the era array they
//! are digested into.

pub mod check;
pub mod dump;
pub mod error;
pub mod format;
pub mod invalidate;
pub mod ir;
pub mod metadata;
pub mod repair;
pub mod restore;

pub use error::{EraError, Result};
pub use format::superblock::Superblock;
pub use format::writeset::WritesetDisk;
pub use metadata::query::{EraView, Run};
pub use metadata::EraMetadata;
