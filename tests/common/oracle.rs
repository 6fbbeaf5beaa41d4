//! Running Debian's thin-provisioning-tools (0.9.0, the oracle) and ours.
//! Standalone (std only): other crates' tests include it by path.
// Each test file uses what it needs of this.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

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

/// Runs `cmd`; whatever its exit status, it must not have panicked.
pub fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().expect("runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "panic: {err}");
    o
}

/// The value of ` name="..."` in a line of the tools' XML.
pub fn xml_attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = line.find(&key)? + key.len();
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

/// The numeric attribute `name` of a line; fails the test if it has none.
pub fn xml_num(line: &str, name: &str) -> u64 {
    xml_attr(line, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("numeric attribute {name} in {line}"))
}
