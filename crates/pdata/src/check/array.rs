//! dm-array and dm-bitset verifiers. An array's spine is a B-tree the
//! client walks as one of its trees (value size 8, see [`SPINE_VALUE_SIZE`]),
//! gathering its leaves' entries with [`Spine::push_leaf`]; [`check`] then
//! reads every array block (in block order, batched, verified on the
//! workers): where it claims to be, its checksum, its geometry (value size,
//! max_entries), and its nr_entries against the array's length. Each array
//! block is counted once per spine entry pointing at it and verified once;
//! the client sees the values of each block that passed (to count what
//! they refer to, or check their rules).

use super::pipeline;
use super::walk::{Client, EngineBlock, SectionOf, Walker};
use crate::array::format::{ArrayBlock, BLOCKNR_OFFSET};
use crate::array::{max_entries, MAX_VALUE_SIZE};
use crate::bitset::{nr_words, WORD_SIZE};
use crate::block_manager::le64;
use crate::btree::node::Shape;
use crate::checksum::{verify, SALT_ARRAY};
use crate::Block;

/// Value size of a spine's leaves: array block locations.
pub const SPINE_VALUE_SIZE: usize = 8;

/// The entries of an array's spine leaves: (array block index, location,
/// already counted: the entry is in a spine leaf another array shares and
/// whose references were counted with it).
#[derive(Debug, Default)]
pub struct Spine(Vec<(u64, u64, bool)>);

impl Spine {
    /// Keeps the entries of spine leaf `b` (its shape passed, value size 8).
    pub fn push_leaf(&mut self, b: &Block, shape: &Shape) {
        let values = super::walk::leaf_values(b, shape);
        for (i, v) in values.chunks_exact(SPINE_VALUE_SIZE).enumerate() {
            self.0.push((super::node::key(b, i), le64(v, 0), false));
        }
    }

    /// A spine from entries the client gathered itself (arrays whose spines
    /// share leaves: a shared leaf's references count once).
    pub fn from_entries(entries: Vec<(u64, u64, bool)>) -> Self {
        Spine(entries)
    }
}

/// An array as its client knows it.
#[derive(Debug, Clone, Copy)]
pub struct ArraySpec {
    /// Names the array in messages ("mapping array", "era array").
    pub name: &'static str,
    pub value_size: usize,
    /// Values it holds (the client keeps the length).
    pub nr_entries: u64,
}

/// One array block to read: its index in the array and where it is.
#[derive(Debug, Clone, Copy)]
struct Job {
    index: u64,
    loc: u64,
}

/// Checks the array whose spine entries the walk gave (`spine`, after
/// `check_repeats`): the spine holds blocks 0..n for the length, every
/// block is sound; `values(w, first, values)` gets the values of each
/// block that passed (value `first` onwards), in block order. Problems go
/// under `section`.
pub fn check<C: Client>(
    w: &mut Walker<C>,
    spine: Spine,
    spec: ArraySpec,
    section: SectionOf<C>,
    mut values: impl FnMut(&mut Walker<C>, u64, &[u8]),
) {
    let name = spec.name;
    if spec.value_size == 0 || spec.value_size > MAX_VALUE_SIZE {
        w.problems.fatal(
            section,
            format!(
                "{name}: value size {} is not in 1..={MAX_VALUE_SIZE}",
                spec.value_size
            ),
        );
        return;
    }
    let per_block = max_entries(spec.value_size) as u64;
    let want = spec.nr_entries.div_ceil(per_block);
    let mut entries = spine.0;
    entries.sort_by_key(|e| e.0);
    if let Some((i, e)) = entries.iter().enumerate().find(|&(i, e)| e.0 != i as u64) {
        w.problems.fatal(
            section,
            format!("{name}: spine entry {} where block {i} was expected", e.0),
        );
    }
    if entries.len() as u64 != want {
        w.problems.fatal(
            section,
            format!(
                "{name}: the spine holds {} blocks; {} entries need {want}",
                entries.len(),
                spec.nr_entries
            ),
        );
    }
    entries.dedup_by_key(|e| e.0);
    entries.retain(|e| e.0 < want);
    let mut jobs = Vec::with_capacity(entries.len());
    for &(index, loc, counted) in &entries {
        if counted {
            // Verified with the array that counted it (if it was sound).
            continue;
        }
        if reference_block(w, loc, name, index, section) {
            jobs.push(Job { index, loc });
        }
    }
    jobs.sort_unstable_by_key(|j| j.loc);
    let expected = |index: u64| (spec.nr_entries - index * per_block).min(per_block) as usize;
    let mut buffers = std::mem::take(&mut w.buffers);
    let (dev, progress) = (w.dev, w.progress);
    pipeline::run(
        dev,
        progress,
        &jobs,
        &mut buffers,
        |j| j.loc,
        |j, b| match b {
            Some(b) => verify_block(j.loc, b, spec.value_size, expected(j.index)),
            None => Some("cannot be read".into()),
        },
        |j, b, verdict| match (b, verdict) {
            (Some(b), None) => {
                let a = ArrayBlock(b);
                values(w, j.index * per_block, a.values());
            }
            (_, problem) => w.problems.fatal(
                section,
                format!(
                    "{name} block {} at block {}: {}",
                    j.index,
                    j.loc,
                    problem.unwrap_or_else(|| "cannot be read".into())
                ),
            ),
        },
    );
    w.buffers = buffers;
}

/// Counts a reference to array block `index` at `loc`; true the first
/// time (to be read). A block met again must be an array block (arrays
/// may share them), not anything else.
fn reference_block<C: Client>(
    w: &mut Walker<C>,
    loc: u64,
    array: &'static str,
    index: u64,
    section: SectionOf<C>,
) -> bool {
    let what = C::Other::from(EngineBlock::ArrayBlock { array, index });
    if loc >= w.meta.nr_blocks() {
        w.problems.fatal(
            section,
            format!(
                "{what} is at block {loc}, beyond the metadata space map ({} blocks)",
                w.meta.nr_blocks()
            ),
        );
        return false;
    }
    if w.meta.inc(loc) == 0 {
        w.others.insert(loc, what);
        w.array_blocks.insert(loc);
        return true;
    }
    if !w.array_blocks.contains(&loc) {
        w.problems.fatal(
            section,
            format!("{what} is at block {loc}, which is also used for something else"),
        );
    }
    false
}

/// What is wrong with array block `b` read from `loc`, which should hold
/// `nr` values of `value_size` bytes; None if nothing.
pub fn verify_block(loc: u64, b: &Block, value_size: usize, nr: usize) -> Option<String> {
    let found = le64(b, BLOCKNR_OFFSET);
    if found != loc {
        return Some(format!("claims to be block {found}"));
    }
    if !verify(b, SALT_ARRAY) {
        return Some("bad checksum".into());
    }
    let a = ArrayBlock(b);
    if let Err(e) = a.check_shape().and_then(|()| a.check_geometry(value_size)) {
        return Some(e);
    }
    (a.nr_entries() != nr).then(|| format!("nr_entries {} where {nr} was expected", a.nr_entries()))
}

/// Checks a bitset of `nr_bits` bits (an array of le64 words) whose spine
/// the walk gave; `words(w, first_word, word)` sees each word of the blocks
/// that passed.
pub fn check_bitset<C: Client>(
    w: &mut Walker<C>,
    spine: Spine,
    name: &'static str,
    nr_bits: u64,
    section: SectionOf<C>,
    mut words: impl FnMut(&mut Walker<C>, u64, u64),
) {
    let spec = ArraySpec {
        name,
        value_size: WORD_SIZE,
        nr_entries: nr_words(nr_bits),
    };
    check(w, spine, spec, section, |w, first, values| {
        for (i, v) in values.chunks_exact(WORD_SIZE).enumerate() {
            words(w, first + i as u64, le64(v, 0));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::test_util::Env;
    use crate::check::report::Section;
    use crate::check::walk::{Ref, TreeKind};
    use crate::check::RefCounts;
    use crate::io::BlockDevice;
    use crate::progress::NoProgress;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Sec;
    impl Section for Sec {
        fn index(self) -> usize {
            0
        }
    }

    #[derive(Debug, Clone, Copy)]
    struct SpineKind;
    impl TreeKind for SpineKind {
        type Tree = ();
        type Section = Sec;
        fn tree(&self) {}
        fn with_tree(self, _: ()) -> Self {
            self
        }
        fn leaf_value_size(&self) -> usize {
            SPINE_VALUE_SIZE
        }
        fn section(&self) -> Sec {
            Sec
        }
        fn context(&self) -> String {
            "array spine".into()
        }
        fn keep_children(&self) -> bool {
            false
        }
    }

    #[derive(Default)]
    struct OneArray(Spine);
    impl Client for OneArray {
        type Kind = SpineKind;
        type Other = EngineBlock;
        fn leaf(
            w: &mut Walker<'_, Self>,
            _: &Ref<SpineKind>,
            b: &Block,
            s: &Shape,
            _: &mut Vec<Ref<SpineKind>>,
        ) {
            w.client.0.push_leaf(b, s);
        }
    }

    /// Walks the spine at `root` on `dev` and checks the array; returns the
    /// problems and the values seen.
    fn run(
        dev: &dyn BlockDevice,
        root: u64,
        spec: ArraySpec,
    ) -> (Vec<String>, Vec<(u64, Vec<u8>)>) {
        let meta = RefCounts::new(dev.nr_blocks()).unwrap();
        let mut w = Walker::new(dev, meta, OneArray::default(), &NoProgress);
        w.walk(&[Ref::root(root, SpineKind)]);
        w.check_repeats();
        let spine = std::mem::take(&mut w.client.0);
        let mut seen = Vec::new();
        check(&mut w, spine, spec, Sec, |_, first, values| {
            let vs = values.chunks_exact(spec.value_size);
            seen.extend(vs.enumerate().map(|(i, v)| (first + i as u64, v.to_vec())));
        });
        (w.problems.errors.clone(), seen)
    }

    fn value(i: u64) -> [u8; 8] {
        (i * 7 + 1).to_le_bytes()
    }

    /// An array of `n` 8-byte values on a fresh device; gives the env and root.
    fn array_of(n: u64) -> (Env, u64) {
        let mut env = Env::new(256);
        let root =
            crate::array::new_with(&mut env.tm, 8, n, |i, v| v.copy_from_slice(&value(i))).unwrap();
        env.commit(&[root]).unwrap();
        (env, root)
    }

    const SPEC: ArraySpec = ArraySpec {
        name: "test array",
        value_size: 8,
        nr_entries: 1200,
    };

    #[test]
    fn a_sound_array_passes_and_shows_every_value() {
        let (env, root) = array_of(1200);
        let (problems, seen) = run(env.dev.as_ref(), root, SPEC);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(seen.len(), 1200);
        assert!(seen
            .iter()
            .enumerate()
            .all(|(i, (at, v))| *at == i as u64 && v[..] == value(*at)));
    }

    #[test]
    fn a_length_the_spine_does_not_hold_is_reported() {
        let (env, root) = array_of(1200);
        let spec = ArraySpec {
            nr_entries: 3000,
            ..SPEC
        };
        let (problems, _) = run(env.dev.as_ref(), root, spec);
        assert!(problems[0].contains("the spine holds 3 blocks; 3000 entries need 6"));
        // The last block is full-length only when it is not the last.
        assert!(problems[1].contains("nr_entries 182 where 509 was expected"));
    }

    #[test]
    fn a_wrong_value_size_is_reported() {
        let (env, root) = array_of(1200);
        let spec = ArraySpec {
            value_size: 16,
            nr_entries: 600,
            ..SPEC
        };
        let (problems, _) = run(env.dev.as_ref(), root, spec);
        assert!(problems.iter().any(|p| p.contains("value_size 8 where 16")));
    }

    #[test]
    fn damaged_blocks_are_reported() {
        let (env, root) = array_of(1200);
        let mut blocks = Vec::new();
        crate::btree::walk_nodes(&env.tm, root, &mut |_, n, _| {
            if n.is_leaf() {
                blocks.extend((0..n.nr_entries()).map(|i| n.value_u64(i)));
            }
            Ok(())
        })
        .unwrap();
        env.corrupt_on_disk(blocks[0], |b| b[100] ^= 1);
        env.corrupt_on_disk(blocks[1], |b| b[BLOCKNR_OFFSET] ^= 1);
        let (problems, seen) = run(env.dev.as_ref(), root, SPEC);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].contains("test array block 0") && problems[0].contains("bad checksum"));
        assert!(problems[1].contains("test array block 1") && problems[1].contains("claims"));
        // Only the last block passed.
        assert_eq!(seen.len(), 1200 - 2 * 509);
        assert_eq!(seen[0].0, 2 * 509);
    }

    #[test]
    fn a_bitset_shows_its_words() {
        let mut env = Env::new(256);
        let root = crate::bitset::new(&mut env.tm, 40_000, true).unwrap();
        env.commit(&[root]).unwrap();
        let meta = RefCounts::new(env.dev.nr_blocks()).unwrap();
        let dev: &dyn BlockDevice = env.dev.as_ref();
        let mut w = Walker::new(dev, meta, OneArray::default(), &NoProgress);
        w.walk(&[Ref::root(root, SpineKind)]);
        w.check_repeats();
        let spine = std::mem::take(&mut w.client.0);
        let mut ones = 0;
        check_bitset(&mut w, spine, "bitset", 40_000, Sec, |_, _, word| {
            ones += word.count_ones()
        });
        assert!(w.problems.is_clean());
        assert_eq!(ones, 40_000);
    }
}
