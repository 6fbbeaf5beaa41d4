//! `pdt demo`: a short tour on a pool in a temporary file.

use std::process::ExitCode;

pub fn run(_args: &[String]) -> ExitCode {
    println!("demo: not yet");
    ExitCode::SUCCESS
}
