//! The tools `pdt` dispatches to: one folder per client (`thin`, `cache`,
//! `era`) over the shared command-line layer (`cli`) and XML
//! layer (`xml`); `demo` and `torture` work on the engine itself.

#[macro_use]
mod cli;
pub mod cache;
mod demo;
pub mod era;
pub mod thin;
mod torture;
pub mod xml;

/// Thin's XML under its former path, for the fuzz targets and tests.
pub use self::thin::xml as thin_xml;
/// `-V`'s answer, for `pdt -V` too.
pub use cli::print_version;

use std::process::ExitCode;

pub struct Tool {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[String]) -> ExitCode,
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "demo",
        about: "a short demonstration on a pool in a temporary file",
        run: demo::run,
    },
    Tool {
        name: "torture",
        about: "crash states and I/O errors at every point of a workload",
        run: torture::run,
    },
    Tool {
        name: "thin_check",
        about: "validate thin-pool metadata",
        run: thin::thin_check::run,
    },
    Tool {
        name: "thin_dump",
        about: "dump thin-pool metadata as XML or text",
        run: thin::thin_dump::run,
    },
    Tool {
        name: "thin_restore",
        about: "build thin-pool metadata from thin_dump XML",
        run: thin::thin_restore::run,
    },
    Tool {
        name: "thin_repair",
        about: "recover damaged thin-pool metadata into another device or file",
        run: thin::thin_repair::run,
    },
    Tool {
        name: "thin_exec",
        about: "apply pool operations to thin-pool metadata, one per line",
        run: thin::thin_exec::run,
    },
    Tool {
        name: "thin_delta",
        about: "show how the mappings of two thin devices differ",
        run: thin::thin_delta::run,
    },
    Tool {
        name: "thin_ls",
        about: "list the thin devices of a pool",
        run: thin::thin_ls::run,
    },
    Tool {
        name: "thin_rmap",
        about: "which thin blocks map some data blocks",
        run: thin::thin_rmap::run,
    },
    Tool {
        name: "thin_trim",
        about: "discard the data blocks a pool does not use",
        run: thin::thin_trim::run,
    },
    Tool {
        name: "cache_check",
        about: "validate dm-cache metadata",
        run: cache::cache_check::run,
    },
    Tool {
        name: "cache_dump",
        about: "dump dm-cache metadata as XML",
        run: cache::cache_dump::run,
    },
    Tool {
        name: "cache_restore",
        about: "build dm-cache metadata from cache_dump XML",
        run: cache::cache_restore::run,
    },
    Tool {
        name: "cache_repair",
        about: "recover damaged dm-cache metadata into another device or file",
        run: cache::cache_repair::run,
    },
    Tool {
        name: "thin_metadata_size",
        about: "estimate the metadata device size a pool needs",
        run: thin::thin_metadata_size::run,
    },
    Tool {
        name: "cache_exec",
        about: "apply dm-cache metadata operations, one per line",
        run: cache::cache_exec::run,
    },
    Tool {
        name: "cache_metadata_size",
        about: "estimate the metadata device size a cache needs",
        run: cache::cache_metadata_size::run,
    },
    Tool {
        name: "cache_writeback",
        about: "copy a cache's dirty blocks to the origin device, offline",
        run: cache::cache_writeback::run,
    },
    Tool {
        name: "era_check",
        about: "validate era metadata",
        run: era::era_check::run,
    },
    Tool {
        name: "era_dump",
        about: "dump era metadata as XML",
        run: era::era_dump::run,
    },
    Tool {
        name: "era_restore",
        about: "build era metadata from era_dump XML",
        run: era::era_restore::run,
    },
    Tool {
        name: "era_invalidate",
        about: "list the origin blocks written since an era",
        run: era::era_invalidate::run,
    },
    Tool {
        name: "era_repair",
        about: "recover damaged era metadata into another device or file",
        run: era::era_repair::run,
    },
    Tool {
        name: "era_exec",
        about: "apply era target operations to era metadata, one per line",
        run: era::era_exec::run,
    },
    Tool {
        name: "thin_shrink",
        about: "move a pool's data below a new size and write its shrunk metadata",
        run: thin::thin_shrink::run,
    },
    Tool {
        name: "thin_migrate",
        about: "copy a thin volume's content out of its pool (offline, live, or incrementally)",
        run: thin::thin_migrate::run,
    },
    Tool {
        name: "thin_metadata_pack",
        about: "write a compressed archive of a device's metadata blocks",
        run: thin::thin_metadata_pack::run,
    },
    Tool {
        name: "thin_metadata_unpack",
        about: "write the metadata blocks of a pack back to a file or device",
        run: thin::thin_metadata_unpack::run,
    },
    Tool {
        name: "thin_serve",
        about: "serve a pool's thin devices over NBD, as dm-thin would",
        run: thin::thin_serve::run,
    },
];

pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}
