//! `era_exec META [SCRIPT]`: era target operations, one per line, applied
//! as the kernel's dm-era would. One output line per operation: `ok`, a
//! value, or `error: MESSAGE`. Input that ends without `commit` is aborted.

use crate::tools::cli::{execute, exit_status, parse_exec, ExecMetadata, Session, Words};
use anyhow::Result;
use era::EraMetadata;
use pdata::io::BlockDevice;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: era_exec [--force] [--stop-on-error] META [SCRIPT]

Applies era target operations to the era metadata file or device META, one
per line, from SCRIPT or standard input. Prints one line per operation: ok,
the value asked for, or 'error: MESSAGE'. Exits 1 if any operation failed.

operations:
  format NR_BLOCKS BLOCK_SECTORS    write BLOCK | write BEGIN END
  checkpoint                        digest [N]
  take_metadata_snap                drop_metadata_snap
  resize NR_BLOCKS                  era
  commit                            abort

format starts era 1 with an empty writeset, as the target's first resume.
write BEGIN END marks the blocks BEGIN..END-1. checkpoint archives the
current writeset and starts the next era. digest folds the N oldest archived
writesets (all without N) into the era array and prints how many it folded.
take_metadata_snap prints the snapshot's block. era prints the current era.
";

/// Each operation and the number of arguments it takes (once per arity).
const OPERATIONS: &[(&str, usize)] = &[
    ("format", 2),
    ("write", 1),
    ("write", 2),
    ("checkpoint", 0),
    ("digest", 0),
    ("digest", 1),
    ("take_metadata_snap", 0),
    ("drop_metadata_snap", 0),
    ("resize", 1),
    ("era", 0),
    ("commit", 0),
    ("abort", 0),
];

pub fn run(args: &[String]) -> ExitCode {
    match parse_exec("era_exec", USAGE, args) {
        Ok(o) => exit_status("era_exec: ", execute(&o, OPERATIONS, apply)),
        Err(status) => status,
    }
}

impl ExecMetadata for EraMetadata {
    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self> {
        Ok(EraMetadata::open(dev, true)?)
    }

    fn abort(&mut self) {
        let _ = EraMetadata::abort(self);
    }
}

/// Applies one operation.
fn apply(s: &mut Session<EraMetadata>, w: &Words) -> Result<String> {
    let ok = "ok".to_string();
    Ok(match w.op {
        "format" => {
            let md = EraMetadata::format(s.dev.clone(), w.num32(1)?, w.num32(2)?, s.force)?;
            s.md = Some(md);
            ok
        }
        "write" if w.nr_args() == 1 => s.md()?.write(w.num(1)?).map(|_| ok)?,
        "write" => s.md()?.write_range(w.num(1)?, w.num(2)?).map(|_| ok)?,
        "checkpoint" => s.md()?.checkpoint().map(|_| ok)?,
        "digest" => {
            let n = if w.nr_args() == 1 {
                w.num(1)?
            } else {
                u64::MAX
            };
            s.md()?.digest(n)?.to_string()
        }
        "take_metadata_snap" => s.md()?.take_metadata_snap()?.to_string(),
        "drop_metadata_snap" => s.md()?.drop_metadata_snap().map(|_| ok)?,
        "resize" => s.md()?.resize(w.num32(1)?).map(|_| ok)?,
        "era" => s.md()?.current_era().to_string(),
        "commit" => s.md()?.commit().map(|_| ok)?,
        _ => s.md()?.abort().map(|_| ok)?,
    })
}
