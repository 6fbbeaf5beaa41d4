//! `pdt torture`: crash states and I/O errors over a workload.

use std::process::ExitCode;

pub fn run(_args: &[String]) -> ExitCode {
    eprintln!("torture: not yet");
    ExitCode::from(1)
}
