//! dm-thin's tools and its XML schema, over the shared command-line
//! ([`super::cli`]) and XML ([`super::xml`]) layers.

mod counted;
mod in_out;
mod introsort;
mod live_pool;
mod migrate_copy;
pub(super) mod thin_check;
pub(super) mod thin_delta;
pub(super) mod thin_dump;
pub(super) mod thin_exec;
pub(super) mod thin_ls;
pub(super) mod thin_metadata_pack;
pub(super) mod thin_metadata_size;
pub(super) mod thin_metadata_unpack;
pub(super) mod thin_migrate;
pub(super) mod thin_repair;
pub(super) mod thin_restore;
pub(super) mod thin_rmap;
pub(super) mod thin_serve;
pub(super) mod thin_shrink;
pub(super) mod thin_trim;
pub mod xml;
