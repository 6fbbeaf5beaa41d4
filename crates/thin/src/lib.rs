//! dm-thin pool metadata, live: the kernel's dm-thin-metadata operations on
//! top of the persistent-data engine, in the kernel's on-disk format.

pub mod check;
pub mod dump;
pub mod error;
pub mod format;
pub mod ir;
pub mod metadata;
pub mod migrate;
pub mod pool;
pub mod progress;
pub mod query;
pub mod repair;
pub mod restore;
pub mod shrink;
pub mod value_types;

pub use error::{Result, ThinError};
pub use format::device_details::DeviceDetails;
pub use metadata::{MappedRange, ThinMetadata};
