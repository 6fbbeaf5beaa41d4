//! The command-line layer every client's tools share: glibc-compatible
//! option parsing with help, version and usage errors answered the same way
//! for every tool, the options many tools take, `-i IN -o OUT`, opening the
//! metadata device named on the command line, the progress bar, and the
//! exit status.

mod device;
mod exec;
mod getopt;
mod in_out;
mod opts;
mod progress;
mod report;
mod status;

pub use device::{open_device, open_restore_output, open_shared};
pub use exec::{execute, parse_exec, ExecMetadata, Session, Words};
pub use getopt::{GetOpt, HasArg, Opt};
pub use in_out::{parse_in_out, InOut, INPUT, OUTPUT};
pub use opts::{ASYNC_IO, HELP, QUIET, VERSION};
pub use progress::{CountingReader, Progress};
pub use report::print_steps;
pub use status::{checker_status, exit_status, number};
