//! The tools `pdt` dispatches to.

mod cli;
mod demo;
mod thin_check;
mod thin_dump;
mod thin_exec;
mod thin_repair;
mod thin_restore;
mod thin_xml;
mod torture;

use std::process::ExitCode;

pub struct Tool {
    pub name: &'static str,
    pub about: &'static str,
    pub run: fn(&[String]) -> ExitCode,
}

pub const TOOLS: &[Tool] = &[
    Tool {
        name: "demo",
        about: "a short demonstration on a pool in a temporary file",
        run: demo::run,
    },
    Tool {
        name: "torture",
        about: "crash states and I/O errors at every point of a workload",
        run: torture::run,
    },
    Tool {
        name: "thin_check",
        about: "validate thin-pool metadata",
        run: thin_check::run,
    },
    Tool {
        name: "thin_dump",
        about: "dump thin-pool metadata as XML or text",
        run: thin_dump::run,
    },
    Tool {
        name: "thin_restore",
        about: "build thin-pool metadata from thin_dump XML",
        run: thin_restore::run,
    },
    Tool {
        name: "thin_repair",
        about: "recover damaged thin-pool metadata into another device or file",
        run: thin_repair::run,
    },
    Tool {
        name: "thin_exec",
        about: "apply pool operations to thin-pool metadata, one per line",
        run: thin_exec::run,
    },
];

pub fn find(name: &str) -> Option<&'static Tool> {
    TOOLS.iter().find(|t| t.name == name)
}
