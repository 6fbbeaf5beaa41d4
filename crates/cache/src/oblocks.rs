//! Origin blocks seen, to find those cached twice (check, restore), in
//! little memory. While they fall in a window of 64 per cache block, a
//! bitset (allocated zeroed, so only the pages touched cost memory) finds
//! each repeat at once; when the blocks spread wider than the pages allowed
//! (3 bytes per cache block, less than the list), the set bits become a list that is sorted at
//! the end (4 bytes each while they fit in 32 bits, 8 after).

/// Bits of the bitset window per cache block.
const WINDOW_PER_BLOCK: u64 = 64;
/// Bitset pages touched, in bytes per cache block, before the list takes over.
const PAGE_BYTES_PER_BLOCK: u64 = 3;
const PAGE_WORDS: usize = 4096 / 8;

#[derive(Debug)]
enum Store {
    Bits {
        words: Vec<u64>,
        /// One bit per page of `words`: touched.
        pages: Vec<u64>,
        nr_pages: u64,
        max_pages: u64,
    },
    Small(Vec<u32>),
    Large(Vec<u64>),
}

#[derive(Debug)]
pub struct Oblocks {
    store: Store,
    /// Repeats found while in the bitset.
    dups: Vec<u64>,
}

impl Oblocks {
    /// Taken, leaving an empty set behind.
    pub fn take(&mut self) -> Self {
        std::mem::replace(self, Oblocks::new(0))
    }

    /// For a cache of `nr_cache_blocks`.
    pub fn new(nr_cache_blocks: u64) -> Self {
        let nr_words = (nr_cache_blocks * WINDOW_PER_BLOCK / 64) as usize;
        let nr_pages = nr_words.div_ceil(PAGE_WORDS);
        Oblocks {
            store: Store::Bits {
                words: vec![0; nr_words],
                pages: vec![0; nr_pages.div_ceil(64)],
                nr_pages: 0,
                max_pages: (nr_cache_blocks * PAGE_BYTES_PER_BLOCK / 4096).max(16),
            },
            dups: Vec::new(),
        }
    }

    #[inline]
    pub fn push(&mut self, oblock: u64) {
        match &mut self.store {
            Store::Bits {
                words,
                pages,
                nr_pages,
                max_pages,
            } => {
                let w = (oblock / 64) as usize;
                if let Some(word) = words.get_mut(w) {
                    let bit = 1u64 << (oblock % 64);
                    if *word != 0 {
                        // Its page is counted already.
                        if *word & bit != 0 {
                            self.dups.push(oblock);
                        }
                        *word |= bit;
                        return;
                    }
                    let page = w / PAGE_WORDS;
                    let pbit = 1u64 << (page % 64);
                    if pages[page / 64] & pbit == 0 && *nr_pages < *max_pages {
                        pages[page / 64] |= pbit;
                        *nr_pages += 1;
                    }
                    if pages[page / 64] & pbit != 0 {
                        *word = bit;
                        return;
                    }
                }
                self.spill_to_list();
                self.push(oblock);
            }
            Store::Small(v) => match u32::try_from(oblock) {
                Ok(o) => v.push(o),
                Err(_) => {
                    let mut all: Vec<u64> = v.iter().map(|&o| u64::from(o)).collect();
                    all.push(oblock);
                    self.store = Store::Large(all);
                }
            },
            Store::Large(v) => v.push(oblock),
        }
    }

    /// The bitset's blocks, as a list.
    fn spill_to_list(&mut self) {
        let Store::Bits { words, .. } = &self.store else {
            return;
        };
        let set = words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64u64)
                .filter(move |b| w >> b & 1 == 1)
                .map(move |b| i as u64 * 64 + b)
        });
        self.store = if words.len() as u64 * 64 <= 1 << 32 {
            Store::Small(set.map(|o| o as u32).collect())
        } else {
            Store::Large(set.collect())
        };
    }

    /// The origin blocks pushed more than once (each once), ascending.
    pub fn duplicates(self) -> Vec<u64> {
        let mut out = self.dups;
        match self.store {
            Store::Bits { .. } => {}
            Store::Small(mut all) => {
                all.sort_unstable();
                out.extend(
                    all.windows(2)
                        .filter(|w| w[0] == w[1])
                        .map(|w| u64::from(w[0])),
                );
            }
            Store::Large(mut all) => {
                all.sort_unstable();
                out.extend(all.windows(2).filter(|w| w[0] == w[1]).map(|w| w[0]));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dups(nr: u64, blocks: &[u64]) -> Vec<u64> {
        let mut o = Oblocks::new(nr);
        for &b in blocks {
            o.push(b);
        }
        o.duplicates()
    }

    #[test]
    fn finds_each_duplicate_once_in_every_form() {
        // In the window.
        assert_eq!(dups(1000, &[5, 3, 5, 9, 5, 3]), vec![3, 5]);
        // Past it (a list), and past 32 bits.
        assert_eq!(dups(1000, &[5, 1 << 20, 7, 1 << 20, 5]), vec![5, 1 << 20]);
        assert_eq!(dups(10, &[5, 1 << 40, 7, 1 << 40, 5]), vec![5, 1 << 40]);
        // Spread over too many pages: the bitset turns into a list.
        let n = 100_000u64;
        let mut blocks: Vec<u64> = (0..n).map(|i| i * 61).collect();
        blocks.push(61 * 7);
        blocks.push(61 * (n - 1));
        assert_eq!(dups(n, &blocks), vec![61 * 7, 61 * (n - 1)]);
        assert!(dups(0, &[]).is_empty());
    }
}
