//! dm-era's tools and its XML schema, over the shared command-line
//! ([`super::cli`]) and XML ([`super::xml`]) layers.

pub(super) mod era_check;
pub(super) mod era_dump;
pub(super) mod era_exec;
pub(super) mod era_invalidate;
pub(super) mod era_repair;
pub(super) mod era_restore;
pub mod xml;
