//! The pool messages (dmsetup message's words, as dm-thin takes them), each
//! applied with every data-changing request quiesced and then committed.

use super::{Pool, PoolError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    CreateThin(u64),
    CreateSnap { dev: u64, origin: u64 },
    Delete(u64),
    SetTransactionId { current: u64, new: u64 },
    ReserveMetadataSnap,
    ReleaseMetadataSnap,
}

impl Message {
    /// Parses one message: `create_thin DEV`, `create_snap DEV ORIGIN`,
    /// `delete DEV`, `set_transaction_id CUR NEW`, `reserve_metadata_snap`,
    /// `release_metadata_snap`.
    pub fn parse(line: &str) -> Result<Message> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some((&op, args)) = words.split_first() else {
            return Err(PoolError::Invalid("empty message".into()));
        };
        let num = |i: usize| -> Result<u64> {
            let w = args
                .get(i)
                .ok_or_else(|| PoolError::Invalid(format!("'{op}' needs more arguments")))?;
            w.parse()
                .map_err(|_| PoolError::Invalid(format!("'{w}' is not a number")))
        };
        let arity = match op {
            "create_thin" | "delete" => 1,
            "create_snap" | "set_transaction_id" => 2,
            "reserve_metadata_snap" | "release_metadata_snap" => 0,
            _ => return Err(PoolError::Invalid(format!("unknown message '{op}'"))),
        };
        if args.len() != arity {
            return Err(PoolError::Invalid(format!(
                "'{op}' takes {arity} argument(s), not {}",
                args.len()
            )));
        }
        Ok(match op {
            "create_thin" => Message::CreateThin(num(0)?),
            "delete" => Message::Delete(num(0)?),
            "create_snap" => Message::CreateSnap {
                dev: num(0)?,
                origin: num(1)?,
            },
            "set_transaction_id" => Message::SetTransactionId {
                current: num(0)?,
                new: num(1)?,
            },
            "reserve_metadata_snap" => Message::ReserveMetadataSnap,
            _ => Message::ReleaseMetadataSnap,
        })
    }
}

impl Pool {
    /// Applies a pool message and commits it. Writes in flight complete
    /// first and new ones wait (for `create_snap`: the origin is quiesced).
    pub fn message(&self, m: &Message) -> Result<()> {
        let _quiet = self.gate.write().unwrap_or_else(|p| p.into_inner());
        // Lock order: the open table, then the metadata.
        let open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.state();
        self.require_changeable(&st)?;
        // Reserving commits at once: data first, as in every commit (the
        // commit below flushes the data itself).
        if *m == Message::ReserveMetadataSnap {
            if let Err(e) = self.flush_data() {
                self.fail_on_flush(&mut st, &e);
                return Err(e);
            }
        }
        let r = match *m {
            Message::CreateThin(dev) => st.md.create_thin(dev),
            Message::CreateSnap { dev, origin } => st.md.create_snap(dev, origin),
            Message::Delete(dev) => {
                if open.get(&dev).is_some_and(|&n| n > 0) {
                    return Err(PoolError::Busy(dev));
                }
                st.md.delete(dev)
            }
            Message::SetTransactionId { current, new } => st.md.set_transaction_id(current, new),
            Message::ReserveMetadataSnap => st.md.reserve_metadata_snap(),
            Message::ReleaseMetadataSnap => st.md.release_metadata_snap(),
        };
        drop(open);
        self.check_failed(&mut st, r)?;
        st.dirty = true;
        self.commit_locked(&mut st)
    }
}
