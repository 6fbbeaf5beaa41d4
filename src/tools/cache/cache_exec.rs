//! `cache_exec META [SCRIPT]`: dm-cache metadata operations, one per line,
//! applied as the kernel's dm-cache would. One output line per operation:
//! `ok`, a value, or `error: MESSAGE`. Input that ends without a commit is
//! aborted.

use crate::tools::cli::exec::{exec_main, ExecSession, Line, Operation};
use crate::tools::cli::open_shared;
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
    exec_main("cache_exec", USAGE, args, |a| {
        Ok(Session {
            dev: open_shared(&a.meta, true)?,
            md: None,
            force: a.force,
        })
    })
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

/// The session: metadata opened lazily (the first line may be `format`).
struct Session {
    dev: Arc<dyn BlockDevice>,
    md: Option<CacheMetadata>,
    force: bool,
}

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

impl Session {
    fn md(&mut self) -> Result<&mut CacheMetadata> {
        if self.md.is_none() {
            self.md = Some(CacheMetadata::open(self.dev.clone(), true)?);
        }
        Ok(self.md.as_mut().expect("opened above"))
    }

    fn format(&mut self, line: &Line<'_>) -> Result<()> {
        let version = line.num32(1, "metadata version")?;
        let block_sectors = line.num32(2, "cache block size")?;
        let nr_blocks = line.num32(3, "number of cache blocks")?;
        let policy = match line.nr_args() {
            3 => Policy::smq(),
            5 => policy(line.word(4)?, line.num32(5, "hint size")?),
            _ => bail!("'format' takes the policy's name and hint size together"),
        };
        // Drop the old handle first: its cache must not outlive the format.
        self.md = None;
        let md = CacheMetadata::format(
            self.dev.clone(),
            version,
            block_sectors,
            nr_blocks,
            &policy,
            self.force,
        )?;
        self.md = Some(md);
        Ok(())
    }
}

impl ExecSession for Session {
    fn operations(&self) -> &'static [Operation] {
        OPERATIONS
    }

    fn finish(&mut self) {
        if let Some(md) = self.md.as_mut() {
            let _ = md.abort();
        }
    }

    fn apply(&mut self, line: &Line<'_>) -> Result<String> {
        let num = |i: usize| line.num(i);
        let ok = "ok".to_string();
        Ok(match line.op() {
            "format" => self.format(line).map(|_| ok)?,
            "insert" => self.md()?.insert(num(1)?, num(2)?).map(|_| ok)?,
            "remove" => self.md()?.remove(num(1)?).map(|_| ok)?,
            "lookup" => match self.md()?.lookup(num(1)?)? {
                Some(m) if m.dirty => format!("{} dirty", m.oblock),
                Some(m) => format!("{} clean", m.oblock),
                None => "unmapped".to_string(),
            },
            "dirty" => self.md()?.set_dirty(num(1)?, true).map(|_| ok)?,
            "clean" => self.md()?.set_dirty(num(1)?, false).map(|_| ok)?,
            "hint" => {
                let value = line.num32(2, "hint value")?;
                self.md()?.set_hint(num(1)?, value).map(|_| ok)?
            }
            "discard_size" => self.md()?.discard_size(num(1)?, num(2)?).map(|_| ok)?,
            "discard" => self.md()?.set_discard(num(1)?, true).map(|_| ok)?,
            "undiscard" => self.md()?.set_discard(num(1)?, false).map(|_| ok)?,
            "resize" => {
                let n = line.num32(1, "number of cache blocks")?;
                self.md()?.resize(n).map(|_| ok)?
            }
            "needs_check" => match line.words.get(1) {
                None => self.md()?.needs_check().to_string(),
                Some(&"set") => self.md()?.set_needs_check().map(|_| ok)?,
                Some(&"clear") => {
                    self.md()?.clear_needs_check();
                    ok
                }
                Some(w) => bail!("needs_check takes 'set' or 'clear', not '{w}'"),
            },
            "commit" => self.md()?.commit(false).map(|_| ok)?,
            "commit_clean" => self.md()?.commit(true).map(|_| ok)?,
            _ => self.md()?.abort().map(|_| ok)?,
        })
    }
}
