//! What the tools share after parsing: reading numbers given as option
//! arguments, turning the outcome of the work into an exit status, and
//! saying an error once.

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
            errln!("{prefix}{}", describe(&e));
            ExitCode::from(1)
        }
    }
}

/// A checker's exit status: as [`exit_status`], but with `quiet` (`-q`)
/// only the status speaks, errors included.
pub fn check_status(quiet: bool, outcome: Result<bool>) -> ExitCode {
    match outcome {
        Err(_) if quiet => ExitCode::from(1),
        r => exit_status("", r),
    }
}

/// An error and its causes, outermost first, joined by ": ", each said
/// once: library errors often print their source in their own message
/// (`I/O error reading block 0: Is a directory`), so a cause already in
/// the text is not repeated.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out += ": ";
        }
        out += &text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_cause_once() {
        let io = std::io::Error::from_raw_os_error(libc::EISDIR);
        let e = anyhow::Error::new(pdata::Error::Io {
            op: "reading",
            block: 0,
            source: io,
        })
        .context("cannot read /tmp");
        let text = describe(&e);
        assert_eq!(text.matches("Is a directory").count(), 1, "{text}");
        assert!(text.starts_with("cannot read /tmp: I/O error reading block 0"));
    }
}
