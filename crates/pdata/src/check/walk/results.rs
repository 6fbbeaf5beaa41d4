//! What the walk found, once it is over: the references to nodes met more
//! than once checked against the nodes, the leaf entries under a root, and
//! the number of entries under a node.

use super::{Client, KindOf, Ref, Summary, TreeKind, TreeOf, Walker, MAX_DEPTH};
use crate::check::node::{key, verify_node};
use crate::check::pipeline;
use crate::progress::NoProgress;
use rustc_hash::FxHashMap;

impl<C: Client> Walker<'_, C> {
    /// The node visited at `loc` (summaries sorted: after `check_repeats`).
    fn summary(&self, loc: u64) -> Option<&Summary<TreeOf<C>>> {
        let loc = u32::try_from(loc).ok()?;
        self.summaries
            .binary_search_by_key(&loc, |s| s.loc)
            .ok()
            .map(|i| &self.summaries[i])
    }

    /// The number of entries of `loc` if it is a compact leaf.
    fn compact_nr(&self, loc: u64) -> Option<u16> {
        let x = *self.leaf_nrs.get(usize::try_from(loc).ok()?)?;
        x.checked_sub(1).map(u16::from)
    }

    /// Checks the references to nodes met more than once so far against
    /// what the nodes hold. Call after each walk.
    pub fn check_repeats(&mut self) {
        self.sort_summaries();
        let repeats = std::mem::take(&mut self.repeats);
        self.resolve(repeats);
    }

    fn sort_summaries(&mut self) {
        if !self.sorted {
            self.summaries.sort_unstable_by_key(|s| s.loc);
            self.sorted = true;
        }
    }

    /// During the walk, when many references to nodes met before are
    /// waiting: checks those whose node was visited already, so that they
    /// do not pile up with the size of the trees.
    pub(super) fn check_visited_repeats(&mut self) {
        self.sort_summaries();
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.repeats)
            .into_iter()
            .partition(|r| self.compact_nr(r.loc).is_some() || self.summary(r.loc).is_some());
        self.repeats = waiting;
        self.resolve(ready);
    }

    /// Checks `repeats` (summaries sorted).
    fn resolve(&mut self, repeats: Vec<Ref<KindOf<C>>>) {
        let (compact, repeats): (Vec<_>, Vec<_>) = repeats
            .into_iter()
            .partition(|r| self.compact_nr(r.loc).is_some());
        self.check_compact_repeats(compact);
        for r in repeats {
            if let Some(&s) = self.summary(r.loc) {
                self.check_repeat(&r, &s);
            } else if let Some(what) = self.others.get(&r.loc) {
                let what = *what;
                self.problems.fatal(
                    r.kind.section(),
                    format!(
                        "{}: points at block {}, which is {what}",
                        r.context(),
                        r.loc
                    ),
                );
            } else if self.is_data_bitmap(r.loc) {
                self.problems.fatal(
                    r.kind.section(),
                    format!(
                        "{}: points at block {}, which is a data space map bitmap",
                        r.context(),
                        r.loc
                    ),
                );
            }
            // Otherwise the first visit failed and was reported.
        }
    }

    /// Checks references to compact leaves, read again (in block order).
    fn check_compact_repeats(&mut self, mut repeats: Vec<Ref<KindOf<C>>>) {
        let Some(tree) = self.compact_tree else {
            return;
        };
        repeats.sort_unstable_by_key(|r| r.loc);
        // Verified as a leaf of the tree it was first found in.
        let Some(value_size) = repeats
            .first()
            .map(|r| r.kind.with_tree(tree).leaf_value_size())
        else {
            return;
        };
        let mut buffers = std::mem::take(&mut self.buffers);
        let dev = self.dev;
        pipeline::run(
            dev,
            &NoProgress,
            &repeats,
            &mut buffers,
            |r| r.loc,
            |r, b| b.map(|b| verify_node(r.loc, b, value_size)),
            |r, b, v| {
                let Some((b, Ok(shape))) = b.zip(v) else {
                    // It passed before: the device changed under the check.
                    self.problems.fatal(
                        r.kind.section(),
                        format!("{}: node {} cannot be read again", r.context(), r.loc),
                    );
                    return;
                };
                let nr = shape.nr;
                let s = Summary {
                    loc: r.loc as u32,
                    nr: nr as u16,
                    max: shape.max as u16,
                    tree,
                    leaf: shape.leaf,
                    first: if nr > 0 { key(b, 0) } else { 0 },
                    last: if nr > 0 { key(b, nr - 1) } else { 0 },
                };
                self.check_repeat(r, &s);
            },
        );
        self.buffers = buffers;
    }

    /// A reference to a node met before, against what the node holds.
    fn check_repeat(&mut self, r: &Ref<KindOf<C>>, s: &Summary<TreeOf<C>>) {
        if s.tree != r.kind.tree() {
            let first: Ref<KindOf<C>> = Ref {
                kind: r.kind.with_tree(s.tree),
                ..*r
            };
            self.problems.fatal(
                r.kind.section(),
                format!(
                    "{}: node {} is a node of the {} as well",
                    r.context(),
                    r.loc,
                    first.context()
                ),
            );
        } else {
            self.check_ref(r, s);
        }
    }

    /// Appends the entries the client kept of the leaves under `loc` (a
    /// node of `tree` that passed, in a tree that keeps its children), in
    /// key order. Call after `check_repeats`.
    pub fn gather<T: Copy>(
        &self,
        loc: u64,
        tree: TreeOf<C>,
        leaves: &FxHashMap<u64, Vec<T>>,
        out: &mut Vec<T>,
    ) {
        self.gather_at(loc, tree, leaves, out, 0)
    }

    fn gather_at<T: Copy>(
        &self,
        loc: u64,
        tree: TreeOf<C>,
        leaves: &FxHashMap<u64, Vec<T>>,
        out: &mut Vec<T>,
        depth: usize,
    ) {
        if depth > MAX_DEPTH {
            return;
        }
        if let Some(entries) = leaves.get(&loc) {
            out.extend_from_slice(entries);
        } else if let Some(&(start, len)) = self
            .summary(loc)
            .filter(|s| s.tree == tree && !s.leaf)
            .and_then(|_| self.children.get(&(loc as u32)))
        {
            for i in start..start + len {
                if let Some(&child) = self.child_locs.get(i as usize) {
                    self.gather_at(child.into(), tree, leaves, out, depth + 1);
                }
            }
        }
    }

    /// Number of leaf entries under node `loc` of `tree` (one that keeps
    /// its children); None if some node below could not be read (reported
    /// already), or in a loop. `memo` is shared by the calls on one tree
    /// kind. Call after `check_repeats`.
    pub fn entries_below(
        &self,
        loc: u64,
        tree: TreeOf<C>,
        memo: &mut FxHashMap<u64, Option<u64>>,
    ) -> Option<u64> {
        self.entries_below_at(loc, tree, memo, 0)
    }

    fn entries_below_at(
        &self,
        loc: u64,
        tree: TreeOf<C>,
        memo: &mut FxHashMap<u64, Option<u64>>,
        depth: usize,
    ) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        if let Some(nr) = self.compact_nr(loc) {
            return (self.compact_tree == Some(tree)).then_some(nr as u64);
        }
        let s = self.summary(loc)?;
        if s.tree != tree {
            return None;
        }
        if s.leaf {
            return Some(s.nr as u64);
        }
        if let Some(&m) = memo.get(&loc) {
            return m;
        }
        memo.insert(loc, None);
        let &(start, len) = self.children.get(&(loc as u32))?;
        let mut sum = Some(0u64);
        for i in start..start + len {
            let child = self.child_locs.get(i as usize).copied()?.into();
            sum = match (sum, self.entries_below_at(child, tree, memo, depth + 1)) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        memo.insert(loc, sum);
        sum
    }
}
