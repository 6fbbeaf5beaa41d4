//! `thin_exec META [SCRIPT]`: pool operations, one per line, applied as the
//! kernel's pool would. One output line per operation: `ok`, a value, or
//! `error: MESSAGE`. Input that ends without `commit` is aborted.

use crate::tools::cli::{execute, exit_status, parse_exec, ExecMetadata, Session, Words};
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
        Ok(o) => exit_status("thin_exec: ", execute(&o, OPERATIONS, apply)),
        Err(status) => status,
    }
}

impl ExecMetadata for ThinMetadata {
    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self> {
        Ok(ThinMetadata::open(dev, true)?)
    }

    fn abort(&mut self) {
        let _ = ThinMetadata::abort(self);
    }
}

/// Applies one operation.
fn apply(s: &mut Session<ThinMetadata>, w: &Words) -> Result<String> {
    let num = |i: usize| w.num(i);
    let op = w.op;
    let ok = "ok".to_string();
    Ok(match op {
        "format" => {
            let size = u32::try_from(num(1)?).map_err(|_| anyhow!("data block size too large"))?;
            let md = ThinMetadata::format(s.dev.clone(), size, num(2)?, s.force)?;
            s.md = Some(md);
            ok
        }
        "create_thin" => s.md()?.create_thin(num(1)?).map(|_| ok)?,
        "create_snap" => s.md()?.create_snap(num(1)?, num(2)?).map(|_| ok)?,
        "delete" => s.md()?.delete(num(1)?).map(|_| ok)?,
        "set_transaction_id" => s.md()?.set_transaction_id(num(1)?, num(2)?).map(|_| ok)?,
        "provision" => s.md()?.provision(num(1)?, num(2)?)?.to_string(),
        "alloc" => s.md()?.alloc()?.to_string(),
        "insert" => s.md()?.insert(num(1)?, num(2)?, num(3)?).map(|_| ok)?,
        "lookup" => match s.md()?.lookup(num(1)?, num(2)?)? {
            Some((b, t)) => format!("{b} {t}"),
            None => "unmapped".to_string(),
        },
        "remove" => s.md()?.remove(num(1)?, num(2)?).map(|_| ok)?,
        "remove_range" => s
            .md()?
            .remove_range(num(1)?, num(2)?, num(3)?)
            .map(|_| ok)?,
        "reserve_metadata_snap" => s.md()?.reserve_metadata_snap().map(|_| ok)?,
        "release_metadata_snap" => s.md()?.release_metadata_snap().map(|_| ok)?,
        "resize_data" => s.md()?.resize_data(num(1)?).map(|_| ok)?,
        "resize_metadata" => s.md()?.resize_metadata(num(1)?).map(|_| ok)?,
        "commit" => s.md()?.commit().map(|_| ok)?,
        _ => s.md()?.abort().map(|_| ok)?,
    })
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
