//! Origin blocks seen, to find those cached twice (check, restore): kept
//! as 4 bytes each while they fit (origins of up to 2^32 blocks, all real
//! ones at the smallest block size up to 128 TiB), 8 bytes after, then
//! sorted once at the end.

#[derive(Debug, Default)]
pub struct Oblocks {
    small: Vec<u32>,
    /// Once one does not fit in 32 bits: all of them.
    large: Option<Vec<u64>>,
}

impl Oblocks {
    #[inline]
    pub fn push(&mut self, oblock: u64) {
        match (&mut self.large, u32::try_from(oblock)) {
            (None, Ok(o)) => self.small.push(o),
            (None, Err(_)) => {
                let mut all: Vec<u64> = self.small.drain(..).map(u64::from).collect();
                self.small = Vec::new();
                all.push(oblock);
                self.large = Some(all);
            }
            (Some(all), _) => all.push(oblock),
        }
    }

    /// The origin blocks pushed more than once (each once), ascending.
    pub fn duplicates(self) -> Vec<u64> {
        let mut out = Vec::new();
        match self.large {
            Some(mut all) => {
                all.sort_unstable();
                for w in all.windows(2) {
                    if w[0] == w[1] && out.last() != Some(&w[0]) {
                        out.push(w[0]);
                    }
                }
            }
            None => {
                let mut all = self.small;
                all.sort_unstable();
                for w in all.windows(2) {
                    if w[0] == w[1] && out.last() != Some(&u64::from(w[0])) {
                        out.push(u64::from(w[0]));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_each_duplicate_once_in_both_widths() {
        let mut o = Oblocks::default();
        for b in [5, 3, 5, 9, 5, 3] {
            o.push(b);
        }
        assert_eq!(o.duplicates(), vec![3, 5]);
        let mut o = Oblocks::default();
        for b in [5, 1 << 40, 7, 1 << 40, 5] {
            o.push(b);
        }
        assert_eq!(o.duplicates(), vec![5, 1 << 40]);
    }
}
