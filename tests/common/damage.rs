//! Reading and damaging thin metadata images in tests. The reader is a
//! small one of its own (the spec's layouts, nothing from the code under
//! test but the checksum), so the damage does not rely on what it tests.

use pdata::checksum::{seal, SALT_BITMAP, SALT_BTREE_NODE, SALT_INDEX, SALT_THIN_SUPERBLOCK};
use std::collections::BTreeMap;

pub const BS: usize = 4096;

/// The little-endian u32 at `at` of `b`.
pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `at` of `b`.
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Which tree a node is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    Details,
    Top,
    Bottom,
    DataIndex,
    DataOverflow,
    MetaOverflow,
}

/// What a block of an image is (the first role met, for shared nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Superblock,
    SnapSuperblock,
    MetaIndex,
    MetaBitmap,
    DataBitmap,
    Node {
        tree: Tree,
        leaf: bool,
        root: bool,
        snap: bool,
    },
}

impl Role {
    pub fn name(&self) -> String {
        match self {
            Role::Node {
                tree, leaf, root, ..
            } => format!(
                "{tree:?}-{}{}",
                if *leaf { "leaf" } else { "internal" },
                if *root { "-root" } else { "" }
            ),
            r => format!("{r:?}"),
        }
    }
}

/// Superblock field offsets (THIN.md §2).
pub mod sb {
    pub const FLAGS: usize = 4;
    pub const BLOCKNR: usize = 8;
    pub const MAGIC: usize = 32;
    pub const VERSION: usize = 40;
    pub const HELD_ROOT: usize = 56;
    pub const DATA_SM: usize = 64;
    pub const META_SM: usize = 192;
    pub const MAPPING_ROOT: usize = 320;
    pub const DETAILS_ROOT: usize = 328;
    pub const INCOMPAT: usize = 360;
    /// Within a space-map root.
    pub const NR_BLOCKS: usize = 0;
    pub const BITMAP_ROOT: usize = 16;
    pub const REF_COUNT_ROOT: usize = 24;
}

/// A metadata image.
#[derive(Clone)]
pub struct Image(pub Vec<u8>);

impl Image {
    pub fn nr_blocks(&self) -> u64 {
        (self.0.len() / BS) as u64
    }
    pub fn block(&self, b: u64) -> &[u8] {
        &self.0[b as usize * BS..(b as usize + 1) * BS]
    }
    pub fn is_zero(&self, b: u64) -> bool {
        self.block(b).iter().all(|&x| x == 0)
    }
    pub fn le32(&self, b: u64, off: usize) -> u32 {
        le32(&self.0, b as usize * BS + off)
    }
    pub fn le64(&self, b: u64, off: usize) -> u64 {
        le64(&self.0, b as usize * BS + off)
    }
    pub fn put32(&mut self, b: u64, off: usize, v: u32) {
        let o = b as usize * BS + off;
        self.0[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put64(&mut self, b: u64, off: usize, v: u64) {
        let o = b as usize * BS + off;
        self.0[o..o + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub fn flip(&mut self, b: u64, byte: usize, bit: u8) {
        self.0[b as usize * BS + byte] ^= 1 << bit;
    }
    pub fn zero(&mut self, b: u64) {
        self.0[b as usize * BS..(b as usize + 1) * BS].fill(0);
    }
    pub fn swap(&mut self, a: u64, b: u64) {
        let x = self.block(a).to_vec();
        let y = self.block(b).to_vec();
        self.0[a as usize * BS..(a as usize + 1) * BS].copy_from_slice(&y);
        self.0[b as usize * BS..(b as usize + 1) * BS].copy_from_slice(&x);
    }
    /// Recomputes the checksum of block `b` as the block of role `r`.
    pub fn reseal(&mut self, b: u64, r: Role) {
        let salt = match r {
            Role::Superblock | Role::SnapSuperblock => SALT_THIN_SUPERBLOCK,
            Role::MetaIndex => SALT_INDEX,
            Role::MetaBitmap | Role::DataBitmap => SALT_BITMAP,
            Role::Node { .. } => SALT_BTREE_NODE,
        };
        seal(&mut self.0[b as usize * BS..(b as usize + 1) * BS], salt);
    }

    // Nodes (FORMAT §3.1).
    pub fn flags(&self, b: u64) -> u32 {
        self.le32(b, 4)
    }
    pub fn nr(&self, b: u64) -> usize {
        self.le32(b, 16) as usize
    }
    pub fn max(&self, b: u64) -> usize {
        self.le32(b, 20) as usize
    }
    pub fn value_size(&self, b: u64) -> usize {
        self.le32(b, 24) as usize
    }
    pub fn key(&self, b: u64, i: usize) -> u64 {
        self.le64(b, 32 + 8 * i)
    }
    pub fn value_off(&self, b: u64, i: usize) -> usize {
        32 + 8 * self.max(b) + i * self.value_size(b)
    }
    pub fn value64(&self, b: u64, i: usize) -> u64 {
        self.le64(b, self.value_off(b, i))
    }

    /// Space-map root field `f` of the superblock (`sb::DATA_SM` or `sb::META_SM`).
    pub fn sm(&self, which: usize, f: usize) -> u64 {
        self.le64(0, which + f)
    }

    /// Every block reachable from the superblock, with its role.
    pub fn roles(&self) -> BTreeMap<u64, Role> {
        let mut out = BTreeMap::new();
        out.insert(0, Role::Superblock);
        let mut trees = vec![
            (self.le64(0, sb::DETAILS_ROOT), Tree::Details, false),
            (self.le64(0, sb::MAPPING_ROOT), Tree::Top, false),
            (
                self.sm(sb::DATA_SM, sb::BITMAP_ROOT),
                Tree::DataIndex,
                false,
            ),
            (
                self.sm(sb::DATA_SM, sb::REF_COUNT_ROOT),
                Tree::DataOverflow,
                false,
            ),
            (
                self.sm(sb::META_SM, sb::REF_COUNT_ROOT),
                Tree::MetaOverflow,
                false,
            ),
        ];
        let held = self.le64(0, sb::HELD_ROOT);
        if held != 0 {
            out.insert(held, Role::SnapSuperblock);
            trees.push((self.le64(held, sb::DETAILS_ROOT), Tree::Details, true));
            trees.push((self.le64(held, sb::MAPPING_ROOT), Tree::Top, true));
        }
        let index = self.sm(sb::META_SM, sb::BITMAP_ROOT);
        out.insert(index, Role::MetaIndex);
        let nr_meta_bitmaps = self.sm(sb::META_SM, sb::NR_BLOCKS).div_ceil(16320);
        for i in 0..nr_meta_bitmaps as usize {
            out.entry(self.le64(index, 16 + 16 * i))
                .or_insert(Role::MetaBitmap);
        }
        // Live trees first: a node shared with the snapshot is not `snap`.
        let mut i = 0;
        while i < trees.len() {
            let (root, tree, snap) = trees[i];
            self.walk(root, tree, snap, true, &mut out, &mut trees);
            i += 1;
        }
        out
    }

    /// The blocks of the metadata snapshot's trees.
    pub fn snapshot_blocks(&self) -> std::collections::BTreeSet<u64> {
        let held = self.le64(0, sb::HELD_ROOT);
        let mut out = BTreeMap::new();
        if held != 0 {
            let mut trees = vec![
                (self.le64(held, sb::DETAILS_ROOT), Tree::Details, true),
                (self.le64(held, sb::MAPPING_ROOT), Tree::Top, true),
            ];
            while let Some((root, tree, snap)) = trees.pop() {
                self.walk(root, tree, snap, true, &mut out, &mut trees);
            }
        }
        out.into_keys().collect()
    }

    fn walk(
        &self,
        b: u64,
        tree: Tree,
        snap: bool,
        root: bool,
        out: &mut BTreeMap<u64, Role>,
        trees: &mut Vec<(u64, Tree, bool)>,
    ) {
        if b >= self.nr_blocks() || out.contains_key(&b) {
            return;
        }
        let leaf = self.flags(b) == 2;
        out.insert(
            b,
            Role::Node {
                tree,
                leaf,
                root,
                snap,
            },
        );
        for i in 0..self.nr(b) {
            let v = self.value64(b, i);
            match (leaf, tree) {
                (false, _) => self.walk(v, tree, snap, false, out, trees),
                (true, Tree::Top) => trees.push((v, Tree::Bottom, snap)),
                (true, Tree::DataIndex) => {
                    out.entry(v).or_insert(Role::DataBitmap);
                }
                _ => {}
            }
        }
    }
}
