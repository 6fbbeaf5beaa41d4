//! The damage corpus's generator. (Other tests draw from `torture::rng`.)

/// xorshift64: the damage corpus's cases, and so the verdicts listed for
/// them, depend on this exact sequence.
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
