//! What the tools share after parsing: reading numbers given as option
//! arguments, and turning the outcome of the work into an exit status.

use anyhow::Result;
use std::process::ExitCode;
use std::str::FromStr;

/// The argument of option `--name` as a number.
pub fn number<T: FromStr>(name: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("--{name} needs a number, not '{value}'"))
}

/// `Ok(true)`: the tool ran and all is well (0). `Ok(false)`: it ran and
/// found problems (1). An error is printed after `prefix` (1).
pub fn exit_status(prefix: &str, outcome: Result<bool>) -> ExitCode {
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("{prefix}{e:#}");
            ExitCode::from(1)
        }
    }
}

/// A checker's exit status: as [`exit_status`], but with `quiet` (`-q`)
/// only the status speaks, even of an error.
pub fn checker_status(quiet: bool, outcome: Result<bool>) -> ExitCode {
    match outcome {
        Err(_) if quiet => ExitCode::from(1),
        r => exit_status("", r),
    }
}
