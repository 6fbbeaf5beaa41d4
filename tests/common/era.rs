//! Era helpers the era tests share: a model of which blocks were written
//! in which era, era_exec scripts, and reading era_invalidate's XML.

use super::oracle::{run, xml_num};
use super::tool::{ok, pdt, s};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// The era each block was last written in (0: never), as the kernel's
/// semantics define it, with the committed copy for aborts.
#[derive(Debug, Clone, PartialEq)]
pub struct EraModel {
    pub era: u32,
    pub last: Vec<u32>,
}

impl EraModel {
    /// A freshly formatted target: era 1, nothing written.
    pub fn new(nr_blocks: u32) -> Self {
        EraModel {
            era: 1,
            last: vec![0; nr_blocks as usize],
        }
    }

    pub fn write(&mut self, begin: u64, end: u64) {
        for b in begin..end {
            self.last[b as usize] = self.era;
        }
    }

    /// era_invalidate --written-since `since`'s blocks.
    pub fn written_since(&self, since: u32) -> BTreeSet<u64> {
        (0..self.last.len() as u64)
            .filter(|&b| {
                let e = self.last[b as usize];
                e != 0 && e >= since
            })
            .collect()
    }
}

/// Runs `era_exec META` on `script`; every line must succeed. Its output.
pub fn exec(meta: &Path, script: &str) -> String {
    let mut child = pdt("era_exec")
        .arg(s(meta))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("era_exec runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("script written");
    let o = child.wait_with_output().expect("era_exec ends");
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "era_exec: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// The blocks an era_invalidate XML lists.
pub fn invalidated(xml: &str) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for line in xml.lines() {
        if line.contains("<block ") {
            out.insert(xml_num(line, "block"));
        } else if line.contains("<range ") {
            // The established spacing: `end = "N"`.
            let end: u64 = line
                .split("end = \"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .and_then(|v| v.parse().ok())
                .expect("a range's end");
            out.extend(xml_num(line, "begin")..end);
        }
    }
    out
}

/// Our era_invalidate's blocks.
pub fn our_invalidate(meta: &Path, since: u32, snap: bool) -> BTreeSet<u64> {
    let mut c = pdt("era_invalidate");
    c.args(["--written-since", &since.to_string(), s(meta)]);
    if snap {
        c.arg("--metadata-snapshot");
    }
    invalidated(&String::from_utf8(ok(&mut c)).expect("utf-8"))
}

/// `cmd`'s exit status and stderr, which must hold no panic.
pub fn status(cmd: &mut Command) -> (bool, String) {
    let o = run(cmd);
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
