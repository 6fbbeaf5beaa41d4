//! `thin_exec META [SCRIPT]`: pool operations, one per line, applied as the
//! kernel's pool would. One output line per operation: `ok`, a value, or
//! `error: MESSAGE`. Input that ends without `commit` is aborted.

use crate::tools::cli::{exit_status, open_shared, parse_exec, run_script, ExecOptions, Words};
use anyhow::{anyhow, Result};
use pdata::io::BlockDevice;
use std::process::ExitCode;
use std::sync::Arc;
use thin::ThinMetadata;

const USAGE: &str = "usage: thin_exec [--force] [--stop-on-error] META [SCRIPT]

Applies pool operations to the thin-pool metadata file or device META, one
per line, from SCRIPT or standard input. Prints one line per operation: ok,
the value asked for, or 'error: MESSAGE'. Exits 1 if any operation failed.

operations:
  format DATA_BLOCK_SECTORS NR_DATA_BLOCKS   create_thin DEV
  create_snap DEV ORIGIN                     delete DEV
  set_transaction_id OLD NEW                 provision DEV VBLOCK
  alloc                                      insert DEV VBLOCK DBLOCK
  lookup DEV VBLOCK                          remove DEV VBLOCK
  remove_range DEV BEGIN END                 reserve_metadata_snap
  release_metadata_snap                      resize_data NR_DATA_BLOCKS
  resize_metadata NR_METADATA_BLOCKS         commit
  abort

provision is alloc + insert. insert maps a block from alloc, or shares a
block already mapped (its count goes up); like the kernel, a pool tells
shared blocks apart only by snapshot times, so share blocks only between a
device and its snapshots. Blocks from alloc that are still unmapped at
commit are released rather than leaked.
";

pub fn run(args: &[String]) -> ExitCode {
    match parse_exec("thin_exec", USAGE, args) {
        Ok(o) => exit_status("thin_exec: ", execute(&o)),
        Err(status) => status,
    }
}

/// The session: metadata opened lazily (the first line may be `format`).
struct Session {
    dev: Arc<dyn BlockDevice>,
    md: Option<ThinMetadata>,
    force: bool,
}

impl Session {
    fn md(&mut self) -> Result<&mut ThinMetadata> {
        if self.md.is_none() {
            self.md = Some(ThinMetadata::open(self.dev.clone(), true)?);
        }
        Ok(self.md.as_mut().expect("opened above"))
    }

    fn apply(&mut self, words: &[&str]) -> Result<String> {
        let w = Words::new(words, OPERATIONS)?;
        let num = |i: usize| w.num(i);
        let op = w.op;
        let ok = "ok".to_string();
        Ok(match op {
            "format" => {
                let size =
                    u32::try_from(num(1)?).map_err(|_| anyhow!("data block size too large"))?;
                let md = ThinMetadata::format(self.dev.clone(), size, num(2)?, self.force)?;
                self.md = Some(md);
                ok
            }
            "create_thin" => self.md()?.create_thin(num(1)?).map(|_| ok)?,
            "create_snap" => self.md()?.create_snap(num(1)?, num(2)?).map(|_| ok)?,
            "delete" => self.md()?.delete(num(1)?).map(|_| ok)?,
            "set_transaction_id" => self
                .md()?
                .set_transaction_id(num(1)?, num(2)?)
                .map(|_| ok)?,
            "provision" => self.md()?.provision(num(1)?, num(2)?)?.to_string(),
            "alloc" => self.md()?.alloc()?.to_string(),
            "insert" => self.md()?.insert(num(1)?, num(2)?, num(3)?).map(|_| ok)?,
            "lookup" => match self.md()?.lookup(num(1)?, num(2)?)? {
                Some((b, t)) => format!("{b} {t}"),
                None => "unmapped".to_string(),
            },
            "remove" => self.md()?.remove(num(1)?, num(2)?).map(|_| ok)?,
            "remove_range" => self
                .md()?
                .remove_range(num(1)?, num(2)?, num(3)?)
                .map(|_| ok)?,
            "reserve_metadata_snap" => self.md()?.reserve_metadata_snap().map(|_| ok)?,
            "release_metadata_snap" => self.md()?.release_metadata_snap().map(|_| ok)?,
            "resize_data" => self.md()?.resize_data(num(1)?).map(|_| ok)?,
            "resize_metadata" => self.md()?.resize_metadata(num(1)?).map(|_| ok)?,
            "commit" => self.md()?.commit().map(|_| ok)?,
            _ => self.md()?.abort().map(|_| ok)?,
        })
    }
}

/// Each operation and the number of arguments it takes.
const OPERATIONS: &[(&str, usize)] = &[
    ("format", 2),
    ("create_thin", 1),
    ("create_snap", 2),
    ("delete", 1),
    ("set_transaction_id", 2),
    ("provision", 2),
    ("alloc", 0),
    ("insert", 3),
    ("lookup", 2),
    ("remove", 2),
    ("remove_range", 3),
    ("reserve_metadata_snap", 0),
    ("release_metadata_snap", 0),
    ("resize_data", 1),
    ("resize_metadata", 1),
    ("commit", 0),
    ("abort", 0),
];

fn execute(opts: &ExecOptions) -> Result<bool> {
    let dev = open_shared(&opts.meta, true)?;
    let mut session = Session {
        dev,
        md: None,
        force: opts.force,
    };
    let all_ok = run_script(opts.script.as_deref(), opts.stop_on_error, |w| {
        session.apply(w)
    })?;
    // Whatever follows the last commit is dropped: nothing of it is on disk.
    if let Some(md) = session.md.as_mut() {
        let _ = md.abort();
    }
    Ok(all_ok)
}
