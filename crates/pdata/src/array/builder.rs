//! Bulk building of a dm-array from values pushed in index order, through a
//! [`BatchWriter`], without the transaction manager (for restore tools:
//! cache's mapping and hint arrays, era's era array).
//!
//! Array blocks are packed full and written as they fill; each one's
//! location goes into a [`TreeBuilder`] for the spine (key: array-block
//! index). Only the last array block may be partly filled, as the format
//! requires. Nothing is shared, so every block written has one reference:
//! the blocks an array uses are exactly those the builder took from the
//! writer, [`blocks_for`] of them (a space-map builder counts each once).

use super::format::{ArrayBlockMut, ARRAY_VALIDATOR};
use super::Geometry;
use crate::block_manager::{new_block_buffer, Validator};
use crate::btree::builder::nodes_for;
use crate::btree::TreeBuilder;
use crate::io::BatchWriter;
use crate::{Block, Result};

/// Spine values: le64 array-block locations.
const SPINE_VALUE_SIZE: usize = 8;

/// Builds one array; see the module comment.
pub struct ArrayBuilder {
    g: Geometry,
    /// The array block being filled (header set, `nr` values).
    cur: Box<Block>,
    nr: usize,
    /// Array blocks written so far: the next one's spine key.
    nr_array_blocks: u64,
    spine: TreeBuilder,
}

impl ArrayBuilder {
    /// An array of `value_size`-byte values (`1..=MAX_VALUE_SIZE`).
    pub fn new(value_size: usize) -> Result<Self> {
        let g = Geometry::new(value_size)?;
        let mut cur = new_block_buffer();
        ArrayBlockMut(&mut cur).init(value_size);
        Ok(ArrayBuilder {
            g,
            cur,
            nr: 0,
            nr_array_blocks: 0,
            spine: TreeBuilder::new(SPINE_VALUE_SIZE),
        })
    }

    /// Values pushed so far: the index the next one gets.
    pub fn len(&self) -> u64 {
        self.nr_array_blocks * self.g.max + self.nr as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a value of the array's value size.
    #[inline]
    pub fn push(&mut self, w: &mut BatchWriter, value: &[u8]) -> Result<()> {
        self.g.check_len(value, "value")?;
        ArrayBlockMut(&mut self.cur)
            .value_mut(self.nr)
            .copy_from_slice(value);
        self.nr += 1;
        if self.nr as u64 == self.g.max {
            self.write_block(w)?;
        }
        Ok(())
    }

    /// Appends a le64 value (arrays of 8-byte values).
    #[inline]
    pub fn push_u64(&mut self, w: &mut BatchWriter, value: u64) -> Result<()> {
        self.push(w, &value.to_le_bytes())
    }

    /// Writes the array block being filled and records it in the spine.
    fn write_block(&mut self, w: &mut BatchWriter) -> Result<()> {
        ArrayBlockMut(&mut self.cur).set_nr_entries(self.nr);
        let (loc, block) = w.alloc()?;
        block.copy_from_slice(&self.cur[..]);
        ARRAY_VALIDATOR.prepare_for_write(loc, block)?;
        self.spine.push_u64(w, self.nr_array_blocks, loc)?;
        self.nr_array_blocks += 1;
        self.nr = 0;
        // Stale values past nr_entries would be harmless, but keep the
        // blocks identical to the ones the transaction manager writes.
        ArrayBlockMut(&mut self.cur).init(self.g.value_size);
        Ok(())
    }

    /// Writes what is left; returns the spine root. An empty array is a
    /// spine of one empty leaf, as `array::new` makes it.
    pub fn finish(mut self, w: &mut BatchWriter) -> Result<u64> {
        if self.nr > 0 {
            self.write_block(w)?;
        }
        self.spine.finish(w)
    }
}

/// Blocks an [`ArrayBuilder`] writes for `len` values of `value_size`
/// bytes (array blocks and spine nodes).
pub fn blocks_for(len: u64, value_size: usize) -> Result<u64> {
    let nr_array_blocks = Geometry::new(value_size)?.nr_blocks(len);
    Ok(nr_array_blocks + nodes_for(nr_array_blocks, SPINE_VALUE_SIZE))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::test_util::spine_refs;
    use crate::array::{self as array_mod, MAX_VALUE_SIZE};
    use crate::block_manager::BlockManager;
    use crate::io::{BlockDevice, MemoryDevice};
    use proptest::prelude::*;
    use rustc_hash::FxHashMap;
    use std::sync::Arc;

    /// Value `i` of an array of `vs`-byte values.
    fn value(vs: usize, i: u64) -> Vec<u8> {
        (0..vs)
            .map(|k| (i.wrapping_mul(131) as u8).wrapping_add(k as u8))
            .collect()
    }

    /// Builds an array of `len` values at block `FIRST` on; checks that it
    /// reads back, and that the blocks the builder took are exactly those
    /// the array references, once each.
    fn build_and_check(len: u64, vs: usize) {
        const FIRST: u64 = 3;
        let nr_blocks = FIRST + blocks_for(len, vs).unwrap() + 4;
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(nr_blocks));
        let mut w = BatchWriter::new(dev.clone(), FIRST, nr_blocks, 7);
        let mut b = ArrayBuilder::new(vs).unwrap();
        assert!(b.is_empty());
        for i in 0..len {
            b.push(&mut w, &value(vs, i)).unwrap();
        }
        assert_eq!(b.len(), len);
        let root = b.finish(&mut w).unwrap();
        w.flush_batch().unwrap();
        let used = w.next_location() - FIRST;
        assert_eq!(
            used,
            blocks_for(len, vs).unwrap(),
            "len {len}, value size {vs}"
        );

        let bm = BlockManager::new(dev, 64, false);
        let mut n = 0u64;
        array_mod::walk(&bm, root, vs, |i, v| {
            assert_eq!(i, n);
            assert_eq!(v, &value(vs, i)[..]);
            n += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(n, len);
        assert_eq!(array_mod::nr_entries(&bm, root, vs).unwrap(), len);

        let mut refs: FxHashMap<u64, u32> = FxHashMap::default();
        spine_refs(&bm, &[root], &mut refs);
        let want: FxHashMap<u64, u32> = (FIRST..FIRST + used).map(|b| (b, 1)).collect();
        assert_eq!(refs, want);
    }

    #[test]
    fn edges_of_blocks_and_spine_levels() {
        for vs in [8, 4] {
            let max = max_entries_of(vs);
            for len in [0, 1, max - 1, max, max + 1, 3 * max, 253 * max + 1] {
                build_and_check(len, vs);
            }
        }
        build_and_check(3, MAX_VALUE_SIZE);
    }

    fn max_entries_of(vs: usize) -> u64 {
        super::super::format::max_entries(vs) as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn builds_what_it_is_given(
            len in prop_oneof![0u64..3, 500u64..1100, 1u64..20_000],
            vs in prop_oneof![Just(8usize), Just(4), Just(1), Just(16), 2usize..64],
        ) {
            build_and_check(len, vs);
        }
    }

    #[test]
    fn refuses_a_value_of_the_wrong_size() {
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(4));
        let mut w = BatchWriter::new(dev, 0, 4, 2);
        let mut b = ArrayBuilder::new(8).unwrap();
        assert!(b.push(&mut w, &[0u8; 4]).is_err());
        assert!(ArrayBuilder::new(0).is_err());
        assert!(ArrayBuilder::new(MAX_VALUE_SIZE + 1).is_err());
        assert!(blocks_for(1, 0).is_err());
    }

    #[test]
    fn equals_what_the_transaction_manager_builds() {
        use crate::array::test_util::Env;
        let (vs, len) = (8, 1500u64);
        let mut env = Env::new(64);
        let root = array_mod::new_with(&mut env.tm, vs, len, |i, v| {
            v.copy_from_slice(&value(vs, i))
        })
        .unwrap();
        let mut from_tm = Vec::new();
        array_mod::walk(&env.tm, root, vs, |_, v| {
            from_tm.extend_from_slice(v);
            Ok(())
        })
        .unwrap();
        let dev: Arc<dyn BlockDevice> = Arc::new(MemoryDevice::new(16));
        let mut w = BatchWriter::new(dev.clone(), 1, 16, 4);
        let mut b = ArrayBuilder::new(vs).unwrap();
        for i in 0..len {
            b.push_u64(&mut w, u64::from_le_bytes(value(vs, i).try_into().unwrap()))
                .unwrap();
        }
        let root = b.finish(&mut w).unwrap();
        w.flush_batch().unwrap();
        let bm = BlockManager::new(dev, 16, false);
        let mut built = Vec::new();
        array_mod::walk(&bm, root, vs, |_, v| {
            built.extend_from_slice(v);
            Ok(())
        })
        .unwrap();
        assert!(built == from_tm);
    }
}
