//! The command-line layer every client's tools share: glibc-compatible
//! option parsing with help, version and usage errors answered the same way
//! for every tool, the options many tools take, `-i IN -o OUT`, opening the
//! metadata device named on the command line, the progress bar, and the
//! exit status.

#[macro_use]
pub mod out;

mod data;
mod device;
pub mod exec;
mod getopt;
mod in_out;
mod interrupt;
mod opts;
mod progress;
mod report;
mod status;
pub mod units;

pub use data::{copy_range, discard, no_copy_range, punch_hole, size_of, zero_out};
pub use device::{
    distinct, open_data, open_device, open_exclusive, open_held, open_output, open_reader,
    open_restore_output, open_shared, open_text_input, refuse_overwrite, same_file, warn_live,
};
pub use getopt::{GetOpt, HasArg, Opt};
pub use in_out::{parse_in_out, InOut, INPUT, OUTPUT};
pub use interrupt::{catch_interrupts, interrupted};
pub use opts::{
    ASYNC_IO, AUTO_REPAIR, CLEAR_NEEDS_CHECK, DATA_DEV, FORCE, HELP, IGNORE_NON_FATAL,
    METADATA_DEV, QUIET, SKIP_MAPPINGS, SUPER_BLOCK_ONLY, VERSION,
};
pub use progress::{CountingReader, Progress};
pub use report::print_steps;
pub use status::{check_status, describe, exit_status, number};

/// What `-V` prints, bare on its own line: the project's version, 2.0.0 and
/// up, which LVM's checks (`%u.%u.%u`, cache tools at least 0.7.0) accept
/// and no thin-provisioning-tools release uses.
pub fn print_version() -> std::io::Result<()> {
    outln!("{}", env!("CARGO_PKG_VERSION"))
}

/// The memory budget of the data block counts (`PDT_DATA_BUDGET`, bytes),
/// for tests: a small one makes a small pool's counts go window by window,
/// as a huge pool's do. None: the tools' default.
pub fn data_budget() -> Option<usize> {
    std::env::var("PDT_DATA_BUDGET").ok()?.parse().ok()
}
