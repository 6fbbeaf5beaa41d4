//! dm-bitset: a dm-array of le64 words, 64 bits per word, 509 words per
//! array block. Bit `b` is bit `b % 64` (from the LSB) of word `b / 64`.
//!
//! The number of bits is not stored; the client keeps it. Readers ignore
//! bits past it in the last word (the kernel may leave them set). This
//! module writes them as zero: `new` and `resize` clear them, and growing
//! sets every bit in `[old_bits, new_bits)` to the default, including
//! those in the old last word that the kernel leaves untouched.
//!
//! There is no cached word: every `set` goes to the array (and does
//! nothing when the bit already has the value).

use crate::array;
use crate::block_manager::{le64, BlockRead};
use crate::io::BatchWriter;
use crate::tm_ops::TransactionOps;
use crate::{Error, Result};

/// Bytes per word: the array's value size.
pub const WORD_SIZE: usize = size_of::<u64>();
pub const BITS_PER_WORD: u64 = 8 * WORD_SIZE as u64;
const _: () = assert!(
    array::format::max_entries(WORD_SIZE) == 509,
    "words per array block"
);

/// Words holding `nr_bits` bits.
pub fn nr_words(nr_bits: u64) -> u64 {
    nr_bits.div_ceil(BITS_PER_WORD)
}

/// Bits [lo, hi) of a word set, for lo <= hi <= 64.
fn bit_range(lo: u64, hi: u64) -> u64 {
    let below = |n: u64| if n >= 64 { !0u64 } else { (1u64 << n) - 1 };
    below(hi) & !below(lo)
}

/// Word `i` of a fresh bitset of `nr_bits` bits, all `default`.
fn fresh_word(i: u64, nr_bits: u64, default: bool) -> u64 {
    if !default {
        return 0;
    }
    bit_range(0, (nr_bits - i * BITS_PER_WORD).min(BITS_PER_WORD))
}

fn get_word(r: &(impl BlockRead + ?Sized), root: u64, i: u64) -> Result<u64> {
    let mut w = [0u8; WORD_SIZE];
    array::get(r, root, WORD_SIZE, i, &mut w)?;
    Ok(le64(&w, 0))
}

fn set_word(tm: &mut (impl TransactionOps + ?Sized), root: u64, i: u64, word: u64) -> Result<u64> {
    array::set(tm, root, WORD_SIZE, i, &word.to_le_bytes())
}

/// Creates a bitset of `nr_bits` bits, all `default`.
pub fn new(tm: &mut (impl TransactionOps + ?Sized), nr_bits: u64, default: bool) -> Result<u64> {
    array::new_with(tm, WORD_SIZE, nr_words(nr_bits), |i, v| {
        v.copy_from_slice(&fresh_word(i, nr_bits, default).to_le_bytes())
    })
}

/// Creates a bitset of `nr_bits` bits where bit `b` is `f(b)`.
pub fn new_with(
    tm: &mut (impl TransactionOps + ?Sized),
    nr_bits: u64,
    mut f: impl FnMut(u64) -> bool,
) -> Result<u64> {
    array::new_with(tm, WORD_SIZE, nr_words(nr_bits), |i, v| {
        let first = i * BITS_PER_WORD;
        let mut w = 0u64;
        for j in 0..(nr_bits - first).min(BITS_PER_WORD) {
            if f(first + j) {
                w |= 1 << j;
            }
        }
        v.copy_from_slice(&w.to_le_bytes())
    })
}

/// Bulk building of a bitset from bits pushed in order, through a
/// [`BatchWriter`] (see [`array::ArrayBuilder`]); bits past the length in
/// the last word are zero, as [`new`] writes them.
pub struct BitsetBuilder {
    words: array::ArrayBuilder,
    word: u64,
    nr_bits: u64,
}

impl BitsetBuilder {
    pub fn new() -> Self {
        BitsetBuilder {
            words: array::ArrayBuilder::new(WORD_SIZE).expect("a word is a valid array value"),
            word: 0,
            nr_bits: 0,
        }
    }

    /// Bits pushed so far.
    pub fn len(&self) -> u64 {
        self.nr_bits
    }

    pub fn is_empty(&self) -> bool {
        self.nr_bits == 0
    }

    /// Appends bit number `len()`.
    #[inline]
    pub fn push(&mut self, w: &mut BatchWriter, bit: bool) -> Result<()> {
        self.word |= (bit as u64) << (self.nr_bits % BITS_PER_WORD);
        self.nr_bits += 1;
        if self.nr_bits.is_multiple_of(BITS_PER_WORD) {
            self.words.push_u64(w, std::mem::take(&mut self.word))?;
        }
        Ok(())
    }

    /// Writes what is left; returns the root.
    pub fn finish(mut self, w: &mut BatchWriter) -> Result<u64> {
        if !self.nr_bits.is_multiple_of(BITS_PER_WORD) {
            self.words.push_u64(w, self.word)?;
        }
        self.words.finish(w)
    }
}

impl Default for BitsetBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Blocks a [`BitsetBuilder`] writes for `nr_bits` bits.
pub fn blocks_for(nr_bits: u64) -> u64 {
    array::builder::blocks_for(nr_words(nr_bits), WORD_SIZE).expect("a word is a valid array value")
}

/// Bit `bit`. `NotFound` past the last word; bits past the length in the
/// last word read as whatever is stored there.
pub fn test(r: &(impl BlockRead + ?Sized), root: u64, bit: u64) -> Result<bool> {
    let w = get_word(r, root, bit / BITS_PER_WORD)?;
    Ok(w >> (bit % BITS_PER_WORD) & 1 == 1)
}

/// Sets bit `bit` to `value`. Returns the new root.
pub fn set(
    tm: &mut (impl TransactionOps + ?Sized),
    root: u64,
    bit: u64,
    value: bool,
) -> Result<u64> {
    let i = bit / BITS_PER_WORD;
    let mask = 1u64 << (bit % BITS_PER_WORD);
    let w = get_word(tm, root, i)?;
    let new = if value { w | mask } else { w & !mask };
    if new == w {
        return Ok(root);
    }
    set_word(tm, root, i, new)
}

/// Changes the length from `old_bits` (the current one) to `new_bits`; new
/// bits are `default`. Returns the new root.
pub fn resize(
    tm: &mut (impl TransactionOps + ?Sized),
    mut root: u64,
    old_bits: u64,
    new_bits: u64,
    default: bool,
) -> Result<u64> {
    let (old_words, new_words) = (nr_words(old_bits), nr_words(new_bits));
    if new_bits > old_bits {
        let tail = old_bits % BITS_PER_WORD;
        if tail != 0 {
            // The old last word: keep its live bits, give the new ones the
            // default and clear the rest.
            let i = old_bits / BITS_PER_WORD;
            let hi = (new_bits - i * BITS_PER_WORD).min(BITS_PER_WORD);
            let w = get_word(tm, root, i)?;
            let mut new = w & bit_range(0, tail);
            if default {
                new |= bit_range(tail, hi);
            }
            if new != w {
                root = set_word(tm, root, i, new)?;
            }
        }
        array::resize_with(tm, root, WORD_SIZE, old_words, new_words, |i, v| {
            v.copy_from_slice(&fresh_word(i, new_bits, default).to_le_bytes())
        })
    } else if new_bits < old_bits {
        root = array::resize(tm, root, WORD_SIZE, old_words, new_words, &[0; WORD_SIZE])?;
        let tail = new_bits % BITS_PER_WORD;
        if tail != 0 {
            let i = new_bits / BITS_PER_WORD;
            let w = get_word(tm, root, i)?;
            let new = w & bit_range(0, tail);
            if new != w {
                root = set_word(tm, root, i, new)?;
            }
        }
        Ok(root)
    } else {
        Ok(root)
    }
}

/// Drops one reference to the bitset.
pub fn delete(tm: &mut (impl TransactionOps + ?Sized), root: u64) -> Result<()> {
    array::delete(tm, root)
}

/// Calls `f(bit, value)` for every bit below `nr_bits`, in order. The
/// array must hold exactly the words `nr_bits` needs, and have the shape
/// [`array::walk`] checks.
pub fn walk(
    r: &(impl BlockRead + ?Sized),
    root: u64,
    nr_bits: u64,
    mut f: impl FnMut(u64, bool) -> Result<()>,
) -> Result<()> {
    let words = nr_words(nr_bits);
    let mut seen = 0u64;
    array::walk(r, root, WORD_SIZE, |i, v| {
        if i >= words {
            return Err(too_long(root, nr_bits));
        }
        let w = le64(v, 0);
        let first = i * BITS_PER_WORD;
        for j in 0..(nr_bits - first).min(BITS_PER_WORD) {
            f(first + j, w >> j & 1 == 1)?;
        }
        seen = i + 1;
        Ok(())
    })?;
    if seen != words {
        return Err(Error::corrupt(
            root,
            "bitset",
            format!("{seen} words where {nr_bits} bits need {words}"),
        ));
    }
    Ok(())
}

fn too_long(root: u64, nr_bits: u64) -> Error {
    Error::corrupt(
        root,
        "bitset",
        format!(
            "more than the {} words {nr_bits} bits need",
            nr_words(nr_bits)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::test_util::Env;
    use proptest::prelude::*;

    fn bits(tm: &impl BlockRead, root: u64, nr_bits: u64) -> Vec<bool> {
        let mut out = Vec::new();
        walk(tm, root, nr_bits, |b, v| {
            assert_eq!(b, out.len() as u64);
            out.push(v);
            Ok(())
        })
        .unwrap();
        out
    }

    fn words(tm: &impl BlockRead, root: u64) -> Vec<u64> {
        let mut out = Vec::new();
        array::walk(tm, root, WORD_SIZE, |_, v| {
            out.push(le64(v, 0));
            Ok(())
        })
        .unwrap();
        out
    }

    /// A built bitset reads back, equals `new_with`'s words (tail bits
    /// zero), and takes `blocks_for` blocks.
    #[test]
    fn builder_matches_new_with() {
        use crate::block_manager::BlockManager;
        use crate::io::{BlockDevice, MemoryDevice};
        use std::sync::Arc;
        let f = |b: u64| (b * 7 + b / 5).is_multiple_of(3);
        for nr_bits in [0u64, 1, 63, 64, 65, 509 * 64, 509 * 64 + 1, 100_000] {
            let mut env = Env::new(256);
            let root = new_with(&mut env.tm, nr_bits, f).unwrap();
            let (want_bits, want_words) = (bits(&env.tm, root, nr_bits), words(&env.tm, root));

            let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(64));
            let mut w = BatchWriter::new(dev.clone(), 1, 64, 4);
            let mut b = BitsetBuilder::new();
            for i in 0..nr_bits {
                b.push(&mut w, f(i)).unwrap();
            }
            assert_eq!(b.len(), nr_bits);
            let root = b.finish(&mut w).unwrap();
            w.flush_batch().unwrap();
            assert_eq!(w.next_location() - 1, blocks_for(nr_bits), "{nr_bits} bits");
            let bm = BlockManager::new(dev, 16, false);
            assert_eq!(bits(&bm, root, nr_bits), want_bits, "{nr_bits} bits");
            assert_eq!(words(&bm, root), want_words, "{nr_bits} bits");
        }
    }

    #[test]
    fn layout() {
        let mut env = Env::new(256);
        let root = new(&mut env.tm, 70, true).unwrap();
        assert_eq!(words(&env.tm, root), vec![!0, 0x3f]);
        let root = set(&mut env.tm, root, 65, false).unwrap();
        assert_eq!(words(&env.tm, root), vec![!0, 0x3d]);
        assert!(!test(&env.tm, root, 65).unwrap());
        assert!(test(&env.tm, root, 69).unwrap());
        assert!(!test(&env.tm, root, 70).unwrap());
        assert!(matches!(test(&env.tm, root, 128), Err(Error::NotFound)));
        let empty = new(&mut env.tm, 0, true).unwrap();
        assert!(words(&env.tm, empty).is_empty());
        assert!(bits(&env.tm, empty, 0).is_empty());
        let odd = new_with(&mut env.tm, 130, |b| b % 2 == 1).unwrap();
        assert_eq!(
            words(&env.tm, odd),
            vec![0xaaaa_aaaa_aaaa_aaaa; 2]
                .into_iter()
                .chain([2])
                .collect::<Vec<_>>()
        );
        delete(&mut env.tm, odd).unwrap();
        // 509 words per array block.
        let big = new(&mut env.tm, 509 * 64 + 1, false).unwrap();
        assert_eq!(array::nr_entries(&env.tm, big, WORD_SIZE).unwrap(), 510);
        env.commit(&[root, empty, big]).unwrap();
        assert_eq!(env.audit(&[root, empty, big]), 2 + 1 + 3);
    }

    #[test]
    fn resize_tail_bits() {
        let mut env = Env::new(256);
        let mut root = new(&mut env.tm, 100, true).unwrap();
        // Shrink inside the last word: bits past the end are cleared.
        root = resize(&mut env.tm, root, 100, 10, true).unwrap();
        assert_eq!(words(&env.tm, root), vec![0x3ff]);
        // Grow with false: the old tail reads false.
        root = resize(&mut env.tm, root, 10, 100, false).unwrap();
        assert_eq!(
            bits(&env.tm, root, 100),
            [vec![true; 10], vec![false; 90]].concat()
        );
        assert_eq!(words(&env.tm, root), vec![0x3ff, 0]);
        // Grow with true, from a word boundary and from inside a word.
        root = resize(&mut env.tm, root, 100, 130, true).unwrap();
        let want = [vec![true; 10], vec![false; 90], vec![true; 30]].concat();
        assert_eq!(bits(&env.tm, root, 130), want);
        assert_eq!(words(&env.tm, root)[2], 0x3);
        // A kernel-written bitset may have bits set past the end: walk
        // ignores them and growing overwrites them.
        root = array::set(&mut env.tm, root, WORD_SIZE, 2, &(!0u64).to_le_bytes()).unwrap();
        assert_eq!(bits(&env.tm, root, 130), want);
        root = resize(&mut env.tm, root, 130, 140, false).unwrap();
        assert_eq!(bits(&env.tm, root, 140), [want, vec![false; 10]].concat());
        assert_eq!(words(&env.tm, root)[2], 0x3);
        // Wrong lengths are caught.
        assert!(walk(&env.tm, root, 64, |_, _| Ok(())).is_err());
        assert!(walk(&env.tm, root, 200, |_, _| Ok(())).is_err());
        env.commit(&[root]).unwrap();
        env.audit(&[root]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Set { bit: u64, value: bool },
        Test { bit: u64 },
        Resize { bits: u64, default: bool },
        Commit,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (any::<u64>(), any::<bool>()).prop_map(|(bit, value)| Op::Set { bit, value }),
            2 => any::<u64>().prop_map(|bit| Op::Test { bit }),
            3 => (0u64..70_000, any::<bool>())
                .prop_map(|(bits, default)| Op::Resize { bits, default }),
            2 => Just(Op::Commit),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn model(
            nr_bits in 0u64..70_000,
            default in any::<bool>(),
            ops in prop::collection::vec(op(), 1..40),
        ) {
            let mut env = Env::new(1024);
            let mut root = new(&mut env.tm, nr_bits, default).unwrap();
            let mut model = vec![default; nr_bits as usize];
            for op in ops {
                match op {
                    Op::Set { bit, value } => {
                        if model.is_empty() {
                            continue;
                        }
                        let b = bit % model.len() as u64;
                        root = set(&mut env.tm, root, b, value).unwrap();
                        model[b as usize] = value;
                    }
                    Op::Test { bit } => {
                        if !model.is_empty() {
                            let b = bit % model.len() as u64;
                            prop_assert_eq!(test(&env.tm, root, b).unwrap(), model[b as usize]);
                        }
                    }
                    Op::Resize { bits, default } => {
                        root = resize(&mut env.tm, root, model.len() as u64, bits, default)
                            .unwrap();
                        model.resize(bits as usize, default);
                    }
                    Op::Commit => {
                        env.commit(&[root]).unwrap();
                        env.audit(&[root]);
                    }
                    Op::Reopen => {
                        env.commit(&[root]).unwrap();
                        prop_assert_eq!(env.reopen().unwrap(), vec![root]);
                        env.audit(&[root]);
                    }
                }
                let n = model.len() as u64;
                prop_assert_eq!(&bits(&env.tm, root, n), &model);
                // Bits past the end are zero in what this module writes.
                let tail = n % BITS_PER_WORD;
                if tail > 0 {
                    let last = *words(&env.tm, root).last().unwrap();
                    prop_assert_eq!(last >> tail, 0);
                }
            }
            env.commit(&[root]).unwrap();
            env.audit(&[root]);
            delete(&mut env.tm, root).unwrap();
            env.commit(&[]).unwrap();
            env.audit(&[]);
        }
    }
}
