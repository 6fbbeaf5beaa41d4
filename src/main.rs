//! `pdt`: one multi-call binary for the persistent-data tools.
//!
//! `pdt TOOL ARGS...`, or the tool itself when invoked through a link named
//! after it (`thin_check -> pdt`).

use pdt::tools;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    // A reader that goes away (`pdt thin_dump IMG | head`) ends the tool
    // quietly by SIGPIPE, as it ends the established tools (status 141 in
    // a shell), instead of an error about a broken pipe. Rust ignores the
    // signal by default.
    // SAFETY: setting a signal's disposition to its default, before any
    // thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let mut args: Vec<String> = std::env::args().collect();
    let invoked = args
        .first()
        .and_then(|a| Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("pdt")
        .to_string();
    let tool = if tools::find(&invoked).is_some() {
        invoked
    } else {
        if args.len() < 2 || args[1] == "-h" || args[1] == "--help" {
            let printed = answer(print_usage());
            return if args.len() < 2 {
                ExitCode::from(2)
            } else {
                printed
            };
        }
        if args[1] == "-V" || args[1] == "--version" {
            return answer(tools::print_version());
        }
        args.remove(0);
        args[0].clone()
    };
    match tools::find(&tool) {
        Some(t) => (t.run)(&args[1..]),
        None => {
            let _ = writeln!(
                io::stderr(),
                "pdt: unknown tool '{tool}' (pdt --help lists them)"
            );
            ExitCode::from(2)
        }
    }
}

fn print_usage() -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "usage: pdt TOOL [ARGS...]   (or run a link named after the tool)\n\ntools:"
    )?;
    for t in tools::TOOLS {
        writeln!(out, "  {:<14} {}", t.name, t.about)?;
    }
    out.flush()
}

/// `println!` would panic on a full disk: say it and exit 1 instead.
fn answer(printed: io::Result<()>) -> ExitCode {
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(io::stderr(), "pdt: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}
