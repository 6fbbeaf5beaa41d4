//! `era_exec META [SCRIPT]`: era target operations, one per line, applied
//! as the kernel's dm-era would. One output line per operation: `ok`, a
//! value, or `error: MESSAGE`. Input that ends without `commit` is aborted.

use crate::tools::cli::exec::{exec_main, ExecClient, Line, Operation, Session};
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

/// Each operation and the number of arguments it takes.
const OPERATIONS: &[Operation] = &[
    Operation::new("format", 2),
    Operation::range("write", 1, 2),
    Operation::new("checkpoint", 0),
    Operation::range("digest", 0, 1),
    Operation::new("take_metadata_snap", 0),
    Operation::new("drop_metadata_snap", 0),
    Operation::new("resize", 1),
    Operation::new("era", 0),
    Operation::new("commit", 0),
    Operation::new("abort", 0),
];

pub fn run(args: &[String]) -> ExitCode {
    exec_main::<EraMetadata>("era_exec", USAGE, args)
}

impl ExecClient for EraMetadata {
    const OPERATIONS: &'static [Operation] = OPERATIONS;

    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self> {
        Ok(EraMetadata::open(dev, true)?)
    }

    fn abort(&mut self) -> Result<()> {
        Ok(EraMetadata::abort(self)?)
    }

    fn apply(s: &mut Session<Self>, w: &Line<'_>) -> Result<String> {
        let ok = "ok".to_string();
        Ok(match w.op() {
            "format" => {
                let nr_blocks = w.num32(1, "number of blocks")?;
                let block_sectors = w.num32(2, "block size")?;
                s.format(|dev, force| {
                    Ok(EraMetadata::format(dev, nr_blocks, block_sectors, force)?)
                })?;
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
            "resize" => s
                .md()?
                .resize(w.num32(1, "number of blocks")?)
                .map(|_| ok)?,
            "era" => s.md()?.current_era().to_string(),
            "commit" => s.md()?.commit().map(|_| ok)?,
            _ => s.md()?.abort().map(|_| ok)?,
        })
    }
}
