//! What the walk found, once it is over: the references to nodes met more
//! than once checked against the nodes, the entries of the devices and top
//! trees, and the number of mappings under each mapping tree.

use super::{Ref, Summary, Tree, Walker, MAX_DEPTH};
use crate::format::device_details::DeviceDetails;
use rustc_hash::FxHashMap;

impl Walker<'_> {
    /// The node visited at `loc` (summaries sorted: after `check_repeats`).
    fn summary(&self, loc: u64) -> Option<&Summary> {
        let loc = u32::try_from(loc).ok()?;
        self.summaries
            .binary_search_by_key(&loc, |s| s.loc)
            .ok()
            .map(|i| &self.summaries[i])
    }

    /// Checks the references to nodes met more than once so far against
    /// what the nodes hold. Call after each walk.
    pub fn check_repeats(&mut self) {
        if !self.sorted {
            self.summaries.sort_unstable_by_key(|s| s.loc);
            self.sorted = true;
        }
        for r in std::mem::take(&mut self.repeats) {
            if let Some(&s) = self.summary(r.loc) {
                if s.tree != r.tree {
                    let first = Ref { tree: s.tree, ..r };
                    self.report.fatal(
                        r.tree.section(),
                        format!(
                            "{}: node {} is a node of the {} as well",
                            r.context(),
                            r.loc,
                            first.context()
                        ),
                    );
                } else {
                    self.check_ref(&r, &s);
                }
            } else if let Some(what) = self.others.get(&r.loc) {
                let what = *what;
                self.report.fatal(
                    r.tree.section(),
                    format!(
                        "{}: points at block {}, which is {what}",
                        r.context(),
                        r.loc
                    ),
                );
            }
            // Otherwise the first visit failed and was reported.
        }
    }

    /// The (device, mapping root) entries of the top level whose root is
    /// `root`, in key order. Call after the walk.
    pub fn top_entries(&self, root: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        self.gather(root, Tree::Top, &self.top_leaves, &mut out, 0);
        out
    }

    /// The entries of the devices tree whose root is `root`.
    pub fn detail_entries(&self, root: u64) -> Vec<(u64, DeviceDetails)> {
        let mut out = Vec::new();
        self.gather(root, Tree::Details, &self.detail_leaves, &mut out, 0);
        out
    }

    /// Appends the leaf entries under `loc`, a node of `tree` that passed.
    fn gather<T: Copy>(
        &self,
        loc: u64,
        tree: Tree,
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
                    self.gather(child, tree, leaves, out, depth + 1);
                }
            }
        }
    }

    /// Number of mappings under the bottom-tree node `loc`; None if some
    /// node below could not be read (reported already), or in a loop. Call
    /// after `check_repeats`.
    pub fn mapped_below(
        &self,
        loc: u64,
        memo: &mut FxHashMap<u64, Option<u64>>,
        depth: usize,
    ) -> Option<u64> {
        if depth > MAX_DEPTH {
            return None;
        }
        let s = self.summary(loc)?;
        if s.tree != Tree::Bottom {
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
            let child = self.child_locs.get(i as usize).copied()?;
            sum = match (sum, self.mapped_below(child, memo, depth + 1)) {
                (Some(a), Some(b)) => Some(a + b),
                _ => None,
            };
        }
        memo.insert(loc, sum);
        sum
    }
}
