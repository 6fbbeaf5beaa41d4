//! Era metadata as the tools see it: a stream of events (DESIGN.md "The
//! tools as event streams"). Readers (the metadata walk in [`crate::dump`],
//! the XML parser) produce it; writers (the XML writer, the bulk
//! [`crate::restore::Restorer`]) consume it.
//!
//! Order: `Superblock`, then each writeset (`WritesetBegin`, its `Bits` in
//! increasing order, `WritesetEnd`) by increasing era, then `EraArrayBegin`,
//! the `Era` entries by increasing block, `EraArrayEnd`, then `End`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Superblock {
        block_size: u32,
        nr_blocks: u32,
        current_era: u32,
    },
    WritesetBegin {
        era: u32,
        nr_bits: u32,
    },
    /// Bits `begin..end` of the writeset are `value` (bits not given are
    /// clear).
    Bits {
        begin: u64,
        end: u64,
        value: bool,
    },
    WritesetEnd,
    EraArrayBegin,
    /// Entries `begin..end` of the era array hold `era` (entries not given
    /// are 0).
    Eras {
        begin: u64,
        end: u64,
        era: u32,
    },
    EraArrayEnd,
    End,
}

/// What consumes the stream.
pub trait Sink {
    fn event(&mut self, ev: &Event) -> crate::Result<()>;
}
