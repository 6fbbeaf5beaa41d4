//! Debian's thin-provisioning-tools (0.9.0): the oracle.

use std::path::Path;
use std::process::Command;

/// The path of Debian's `tool`; fails the test if it is not installed.
pub fn debian(tool: &str) -> String {
    let p = format!("/usr/sbin/{tool}");
    assert!(
        Path::new(&p).exists(),
        "{p} is missing: apt-get install thin-provisioning-tools"
    );
    p
}

/// Debian's `tool`, ready for its arguments.
pub fn debian_cmd(tool: &str) -> Command {
    Command::new(debian(tool))
}
