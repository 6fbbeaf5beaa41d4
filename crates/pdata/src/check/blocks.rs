//! A set of metadata blocks, a bit each: what a check remembers of many
//! blocks (a data space map's bitmaps, the leaves it reads again) in an
//! eighth of a byte per metadata block.

#[derive(Debug, Default, Clone)]
pub struct BlockSet {
    words: Vec<u64>,
}

impl BlockSet {
    /// Adds `b` (a metadata block: below 2^32).
    pub fn insert(&mut self, b: u64) {
        let word = (b / 64) as usize;
        if self.words.len() <= word {
            self.words.resize(word + 1, 0);
        }
        self.words[word] |= 1 << (b % 64);
    }

    pub fn contains(&self, b: u64) -> bool {
        let word = self.words.get((b / 64) as usize).copied();
        word.is_some_and(|w| w & (1 << (b % 64)) != 0)
    }

    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The blocks, ascending.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        crate::space_map::spans::ones(&self.words)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_and_iterate() {
        let mut s = BlockSet::default();
        assert!(s.is_empty());
        for b in [700, 3, 64, 63, 3] {
            s.insert(b);
        }
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![3, 63, 64, 700]);
        assert!(s.contains(64) && !s.contains(65) && !s.contains(1 << 40));
    }
}
