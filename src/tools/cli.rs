//! The common ending of a tool: parse, run, turn the outcome into an exit
//! status.

use anyhow::Result;
use std::process::ExitCode;

/// What a tool prints for itself.
pub struct Cli {
    pub usage: &'static str,
    /// Put before error messages ("thin_exec: "), or empty.
    pub prefix: &'static str,
    /// Exit status for bad arguments.
    pub usage_status: u8,
}

impl Cli {
    /// `parse` gives None when help was asked for. `execute` gives
    /// `Ok(false)` when it ran and found problems (exit 1); an error is
    /// printed and exits 1 too.
    pub fn run<O>(
        &self,
        args: &[String],
        parse: impl FnOnce(&[String]) -> Result<Option<O>>,
        execute: impl FnOnce(&O) -> Result<bool>,
    ) -> ExitCode {
        let opts = match parse(args) {
            Ok(Some(o)) => o,
            Ok(None) => {
                print!("{}", self.usage);
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                eprintln!("{}{e}\n{}", self.prefix, self.usage);
                return ExitCode::from(self.usage_status);
            }
        };
        match execute(&opts) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("{}{e:#}", self.prefix);
                ExitCode::from(1)
            }
        }
    }
}
