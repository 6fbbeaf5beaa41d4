//! Printing that cannot panic. `println!` panics when stdout fails (a full
//! disk, `>/dev/full`) and `eprintln!` when stderr does; a tool ends with a
//! message and a non-zero exit instead. A closed pipe never gets here: the
//! tools keep SIGPIPE's default and end quietly, as Debian's do.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

/// Writes a tool's answer to stdout and flushes it: the answer is only
/// given once it is out.
pub fn stdout(args: fmt::Arguments) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_fmt(args)?;
    out.flush()
}

/// Writes to stderr. A failure is dropped: there is nowhere left to say it.
pub fn stderr(args: fmt::Arguments) {
    let _ = io::stderr().lock().write_fmt(args);
}

/// Exit status 1 for an answer that could not be written, saying why on
/// stderr (which may still work when stdout is a full disk).
pub fn write_failed(tool: &str, e: &io::Error) -> ExitCode {
    stderr(format_args!("{tool}: cannot write to stdout: {e}\n"));
    ExitCode::FAILURE
}

/// `print!` returning `io::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::tools::cli::out::stdout(format_args!($($arg)*))
    };
}

/// `println!` returning `io::Result<()>`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::tools::cli::out::stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprintln!` that never panics.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::tools::cli::out::stderr(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `eprint!` that never panics.
macro_rules! err {
    ($($arg:tt)*) => {
        $crate::tools::cli::out::stderr(format_args!($($arg)*))
    };
}
