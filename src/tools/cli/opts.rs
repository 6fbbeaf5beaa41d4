//! Options many tools take, spelled once. A tool lists them in its table
//! where it wants them: the order decides which option a `--prefix` finds
//! first and how an ambiguity is reported.

use super::getopt::{HasArg, Opt};

/// `-h`, `--help`: answered by [`super::GetOpt::next_opt`].
pub const HELP: Opt = Opt::both('h', "help", HasArg::No, "help");
/// `-V`, `--version`: answered by [`super::GetOpt::next_opt`].
pub const VERSION: Opt = Opt::both('V', "version", HasArg::No, "version");
/// `-q`, `--quiet`: no progress bar, fewer words.
pub const QUIET: Opt = Opt::both('q', "quiet", HasArg::No, "quiet");
/// `-f`, `--force`: overwrite an output that is not empty.
pub const FORCE: Opt = Opt::both('f', "force", HasArg::No, "force");
/// 1.x's I/O engine switch, accepted and ignored: there is one engine here.
pub const ASYNC_IO: Opt = Opt::long("async-io", HasArg::No, "async-io");

/// The checkers' options (thin_check, cache_check, era_check).
pub const AUTO_REPAIR: Opt = Opt::long("auto-repair", HasArg::No, "auto-repair");
pub const CLEAR_NEEDS_CHECK: Opt = Opt::long(
    "clear-needs-check-flag",
    HasArg::No,
    "clear-needs-check-flag",
);
pub const IGNORE_NON_FATAL: Opt = Opt::long(
    "ignore-non-fatal-errors",
    HasArg::No,
    "ignore-non-fatal-errors",
);
pub const SKIP_MAPPINGS: Opt = Opt::long("skip-mappings", HasArg::No, "skip-mappings");
pub const SUPER_BLOCK_ONLY: Opt = Opt::long("super-block-only", HasArg::No, "super-block-only");

/// A pool's two devices (thin_trim, thin_serve).
pub const METADATA_DEV: Opt = Opt::long("metadata-dev", HasArg::Required, "metadata");
pub const DATA_DEV: Opt = Opt::long("data-dev", HasArg::Required, "data");
