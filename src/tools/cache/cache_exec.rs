//! `cache_exec META [SCRIPT]`: dm-cache metadata operations, one per line,
//! applied as the kernel's dm-cache would. One output line per operation:
//! `ok`, a value, or `error: MESSAGE`. Input that ends without a commit is
//! aborted.

use crate::tools::cli::exec::{exec_main, ExecClient, Line, Operation, Session};
use anyhow::{bail, Result};
use cache::format::superblock::{Policy, POLICY_VERSION_WORDS};
use cache::CacheMetadata;
use pdata::io::BlockDevice;
use std::process::ExitCode;
use std::sync::Arc;

const USAGE: &str = "usage: cache_exec [--force] [--stop-on-error] META [SCRIPT]

Applies dm-cache metadata operations to the metadata file or device META,
one per line, from SCRIPT or standard input. Prints one line per operation:
ok, the value asked for, or 'error: MESSAGE'. Exits 1 if any operation failed.

operations:
  format VERSION BLOCK_SECTORS NR_CACHE_BLOCKS [POLICY HINT_SIZE]
  insert CBLOCK OBLOCK             remove CBLOCK
  lookup CBLOCK                    dirty CBLOCK
  clean CBLOCK                     hint CBLOCK VALUE
  discard_size BLOCK_SECTORS NR_BLOCKS
  discard BLOCK                    undiscard BLOCK
  resize NR_CACHE_BLOCKS           needs_check [set|clear]
  commit                           commit_clean
  abort

format makes version 1 or 2 metadata (POLICY smq, HINT_SIZE 4 unless
given; --force overwrites existing metadata). insert maps a cache block
clean; lookup prints 'OBLOCK dirty', 'OBLOCK clean' or 'unmapped'.
commit_clean commits with the clean-shutdown flag, as the kernel does when
the cache is suspended; after a commit without it, the next opening counts
every mapped block dirty and drops the hints. needs_check alone prints
'true' or 'false'; 'set' writes the flag at once, 'clear' at the next commit.
";

pub fn run(args: &[String]) -> ExitCode {
    exec_main::<CacheMetadata>("cache_exec", USAGE, args)
}

/// Each operation and the number of arguments it takes.
const OPERATIONS: &[Operation] = &[
    Operation::range("format", 3, 5),
    Operation::new("insert", 2),
    Operation::new("remove", 1),
    Operation::new("lookup", 1),
    Operation::new("dirty", 1),
    Operation::new("clean", 1),
    Operation::new("hint", 2),
    Operation::new("discard_size", 2),
    Operation::new("discard", 1),
    Operation::new("undiscard", 1),
    Operation::new("resize", 1),
    Operation::range("needs_check", 0, 1),
    Operation::new("commit", 0),
    Operation::new("commit_clean", 0),
    Operation::new("abort", 0),
];

/// The policy `format` names: the kernel's version of the policies it
/// knows (smq, its alias mq, cleaner), 1.0.0 for any other.
fn policy(name: &str, hint_size: u32) -> Policy {
    let version: [u32; POLICY_VERSION_WORDS] = match name {
        "smq" | "mq" => [2, 0, 0],
        _ => [1, 0, 0],
    };
    Policy {
        name: name.to_string(),
        version,
        hint_size,
    }
}

/// `format VERSION BLOCK_SECTORS NR_CACHE_BLOCKS [POLICY HINT_SIZE]`.
fn format(s: &mut Session<CacheMetadata>, line: &Line<'_>) -> Result<()> {
    let version = line.num32(1, "metadata version")?;
    let block_sectors = line.num32(2, "cache block size")?;
    let nr_blocks = line.num32(3, "number of cache blocks")?;
    let policy = match line.nr_args() {
        3 => Policy::smq(),
        5 => policy(line.word(4)?, line.num32(5, "hint size")?),
        _ => bail!("'format' takes the policy's name and hint size together"),
    };
    s.format(|dev, force| {
        Ok(CacheMetadata::format(
            dev,
            version,
            block_sectors,
            nr_blocks,
            &policy,
            force,
        )?)
    })
}

impl ExecClient for CacheMetadata {
    const OPERATIONS: &'static [Operation] = OPERATIONS;

    fn open(dev: Arc<dyn BlockDevice>) -> Result<Self> {
        Ok(CacheMetadata::open(dev, true)?)
    }

    fn abort(&mut self) -> Result<()> {
        Ok(CacheMetadata::abort(self)?)
    }

    fn apply(s: &mut Session<Self>, line: &Line<'_>) -> Result<String> {
        let num = |i: usize| line.num(i);
        let ok = "ok".to_string();
        Ok(match line.op() {
            "format" => format(s, line).map(|_| ok)?,
            "insert" => s.md()?.insert(num(1)?, num(2)?).map(|_| ok)?,
            "remove" => s.md()?.remove(num(1)?).map(|_| ok)?,
            "lookup" => match s.md()?.lookup(num(1)?)? {
                Some(m) if m.dirty => format!("{} dirty", m.oblock),
                Some(m) => format!("{} clean", m.oblock),
                None => "unmapped".to_string(),
            },
            "dirty" => s.md()?.set_dirty(num(1)?, true).map(|_| ok)?,
            "clean" => s.md()?.set_dirty(num(1)?, false).map(|_| ok)?,
            "hint" => {
                let value = line.num32(2, "hint value")?;
                s.md()?.set_hint(num(1)?, value).map(|_| ok)?
            }
            "discard_size" => s.md()?.discard_size(num(1)?, num(2)?).map(|_| ok)?,
            "discard" => s.md()?.set_discard(num(1)?, true).map(|_| ok)?,
            "undiscard" => s.md()?.set_discard(num(1)?, false).map(|_| ok)?,
            "resize" => {
                let n = line.num32(1, "number of cache blocks")?;
                s.md()?.resize(n).map(|_| ok)?
            }
            "needs_check" => match line.words.get(1) {
                None => s.md()?.needs_check().to_string(),
                Some(&"set") => s.md()?.set_needs_check().map(|_| ok)?,
                Some(&"clear") => {
                    s.md()?.clear_needs_check();
                    ok
                }
                Some(w) => bail!("needs_check takes 'set' or 'clear', not '{w}'"),
            },
            "commit" => s.md()?.commit(false).map(|_| ok)?,
            "commit_clean" => s.md()?.commit(true).map(|_| ok)?,
            _ => s.md()?.abort().map(|_| ok)?,
        })
    }
}
