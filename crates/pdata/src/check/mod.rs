//! The generic checking machinery every client's checker is built from
//! (DESIGN.md "The checker"): blocks read straight from the device in
//! batches and verified on worker threads ([`pipeline`]), B-trees walked
//! level by level with shared nodes visited once ([`walk`]), one node rule
//! ([`node`]), dm-array and dm-bitset verifiers ([`array`]), the
//! comparison of space maps with the references counted ([`space_map`]),
//! and the problems found ([`report`]). A client says only what is its own:
//! its trees, its value types, its rules, its superblock.

pub mod array;
pub mod blocks;
pub mod node;
pub mod pipeline;
pub mod repair;
pub mod report;
pub mod space_map;
pub mod walk;

pub use crate::space_map::counts::{RefCounts, OVERFLOW_SEEN};
pub use blocks::BlockSet;
pub use report::{Problem, Problems, Section, Severity};
