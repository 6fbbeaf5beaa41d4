//! Encoding one metadata block as pack instructions (see [`super::format`]).
//! B-tree nodes are split into header, keys, values and tail: keys and
//! u64 values become runs of deltas, which zlib then squeezes far better
//! than the raw bytes; every other block is one literal.

use super::format::{tag, LOW_MASK, MAX_COUNT, SHIFT};
use crate::btree::node::{FLAGS_OFFSET, INTERNAL_VALUE_SIZE};
use crate::btree::node::{HEADER_SIZE, KEY_SIZE, LEAF_NODE, MAX_ENTRIES_OFFSET, VALUE_SIZE_OFFSET};
use crate::checksum::BlockKind;
use crate::{Block, BLOCK_SIZE};

/// Appends the instructions that rebuild `block` (of kind `kind`) to `out`.
pub fn encode_block(kind: BlockKind, block: &Block, out: &mut Vec<u8>) {
    if kind != BlockKind::BTreeNode || !encode_node(block, out) {
        literal(block, out);
    }
}

fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

fn u64s(bytes: &[u8]) -> impl Iterator<Item = u64> + '_ {
    bytes.chunks_exact(8).map(|c| {
        let mut b = [0u8; 8];
        b.copy_from_slice(c);
        u64::from_le_bytes(b)
    })
}

/// A node's header, keys as a delta run, u64 values as a delta run (a
/// leaf's split at bit 24, where thin's mappings keep the time), the rest
/// as a literal. False, having written nothing, when the header's
/// geometry does not fit the block (a damaged node is packed as it is).
fn encode_node(block: &Block, out: &mut Vec<u8>) -> bool {
    let max_entries = le32(block, MAX_ENTRIES_OFFSET) as usize;
    let value_size = le32(block, VALUE_SIZE_OFFSET) as usize;
    let keys_end = HEADER_SIZE + max_entries * KEY_SIZE;
    if keys_end > BLOCK_SIZE {
        return false;
    }
    let mut scratch = Vec::with_capacity(max_entries);
    literal(&block[..HEADER_SIZE], out);
    scratch.extend(u64s(&block[HEADER_SIZE..keys_end]));
    u64_run(&scratch, out);
    let values_end = keys_end + max_entries * INTERNAL_VALUE_SIZE;
    let tail = if value_size == INTERNAL_VALUE_SIZE && values_end <= BLOCK_SIZE {
        scratch.clear();
        scratch.extend(u64s(&block[keys_end..values_end]));
        if le32(block, FLAGS_OFFSET) == LEAF_NODE {
            shifted_run(&scratch, out);
        } else {
            u64_run(&scratch, out);
        }
        &block[values_end..]
    } else {
        &block[keys_end..]
    };
    if !tail.is_empty() {
        literal(tail, out);
    }
    true
}

fn op(t: u8, nibble: u8, out: &mut Vec<u8>) {
    debug_assert!(t < 16 && nibble < 16);
    out.push((t << 4) | nibble);
}

/// Bytes needed for `v`: 1, 2, 4 or 8.
fn width(v: u64) -> u8 {
    match v {
        0..=0xff => 1,
        0x100..=0xffff => 2,
        0x1_0000..=0xffff_ffff => 4,
        _ => 8,
    }
}

/// An instruction whose nibble is the width of the operand `v` that follows.
fn op_wide(t: u8, v: u64, out: &mut Vec<u8>) {
    let w = width(v);
    op(t, w, out);
    out.extend_from_slice(&v.to_le_bytes()[..w as usize]);
}

fn literal(bytes: &[u8], out: &mut Vec<u8>) {
    if bytes.len() < 16 {
        op(tag::LIT, bytes.len() as u8, out);
    } else {
        op_wide(tag::LIT_W, bytes.len() as u64, out);
    }
    out.extend_from_slice(bytes);
}

/// A 12-bit count as a nibble and a byte, for the `*8` forms.
fn op_count8(t: u8, count: usize, out: &mut Vec<u8>) {
    debug_assert!(count <= MAX_COUNT);
    op(t, (count >> 8) as u8, out);
    out.push(count as u8);
}

/// `base` emitted `count` more times.
fn repeat(mut count: usize, out: &mut Vec<u8>) {
    while count > 0 {
        let n = count.min(MAX_COUNT);
        if n < 16 {
            op(tag::CONST, n as u8, out);
        } else {
            op_count8(tag::CONST8, n, out);
        }
        count -= n;
    }
}

/// `count` steps of `delta` up (or down when `down`).
fn steps(delta: u64, down: bool, mut count: usize, out: &mut Vec<u8>) {
    let (small, wide) = if down {
        (tag::NEG, tag::NEG_W)
    } else {
        (tag::POS, tag::POS_W)
    };
    while count > 0 {
        let n = count.min(MAX_COUNT);
        if n >= 16 {
            op_count8(tag::COUNT8, n, out);
        } else if n > 1 {
            op(tag::COUNT, n as u8, out);
        }
        if delta < 16 {
            op(small, delta as u8, out);
        } else {
            op_wide(wide, delta, out);
        }
        count -= n;
    }
}

/// The instructions that emit `values`: the first set, then runs of equal
/// steps.
pub fn u64_run(values: &[u64], out: &mut Vec<u8>) {
    let Some((&first, _)) = values.split_first() else {
        return;
    };
    op_wide(tag::SET, first, out);
    let mut base = first;
    let mut i = 1;
    while i < values.len() {
        let v = values[i];
        let step = v.wrapping_sub(base);
        let mut n = 1;
        while i + n < values.len() && values[i + n].wrapping_sub(values[i + n - 1]) == step {
            n += 1;
        }
        let (delta, down) = if v >= base {
            (v - base, false)
        } else {
            (base - v, true)
        };
        if step == 0 {
            repeat(n, out);
        } else if n == 1 && width(v) < width(delta) {
            // A lone far jump: the value itself is shorter than the step.
            op_wide(tag::SET, v, out);
        } else {
            steps(delta, down, n, out);
        }
        base = values[i + n - 1];
        i += n;
    }
}

/// `values` as a SHIFTED instruction: their high bits and their low 24
/// bits as two runs (thin's mapping values are `block << 24 | time`).
pub fn shifted_run(values: &[u64], out: &mut Vec<u8>) {
    if values.is_empty() {
        return;
    }
    debug_assert!(values.len() <= MAX_COUNT);
    op_count8(tag::SHIFTED, values.len(), out);
    let high: Vec<u64> = values.iter().map(|v| v >> SHIFT).collect();
    u64_run(&high, out);
    let low: Vec<u64> = values.iter().map(|v| v & LOW_MASK).collect();
    u64_run(&low, out);
}
