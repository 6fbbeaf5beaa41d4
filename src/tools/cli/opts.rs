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
/// 1.x's I/O engine switch, accepted and ignored: there is one engine here.
pub const ASYNC_IO: Opt = Opt::long("async-io", HasArg::No, "async-io");
