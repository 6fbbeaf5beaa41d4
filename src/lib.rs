//! The tools of the multi-call binary `pdt`, as a library: for the binary
//! itself, for the fuzz targets and for tests.

// `println!` and `eprintln!` panic when the stream fails (a full disk):
// the tools print through `tools::cli::out` (`outln!`, `errln!`).
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod fuzzing;
pub mod tools;
