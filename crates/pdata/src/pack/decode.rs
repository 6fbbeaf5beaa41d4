//! Running pack instructions (see [`super::format`]) back into blocks.
//! Every count, width and length read is checked against the bytes left to
//! emit, so a corrupt pack ends in an error, never a panic or a runaway.

use super::format::{tag, LOW_MASK, SHIFT};
use crate::{Block, BLOCK_SIZE};

/// What is wrong with a chunk's instructions.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the instructions end before the block is complete")]
    Truncated,
    #[error("bad instruction tag {0}")]
    BadTag(u8),
    #[error("bad operand width {0}")]
    BadWidth(u8),
    #[error("an instruction writes past the end of the block")]
    Overrun,
    #[error("a count prefixes instruction {0}, which takes none")]
    MisplacedCount(u8),
    #[error("shifted runs nested too deep")]
    TooDeep,
}

/// SHIFTED runs inside SHIFTED runs: no writer makes them; a few are
/// allowed, as the format does not forbid them, and the depth is bounded.
const MAX_DEPTH: usize = 4;

/// Reads instructions from a slice.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn at_end(&self) -> bool {
        self.pos == self.data.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// An unsigned little-endian operand of `width` bytes (1, 2, 4 or 8).
    fn wide(&mut self, width: u8) -> Result<u64, DecodeError> {
        if !matches!(width, 1 | 2 | 4 | 8) {
            return Err(DecodeError::BadWidth(width));
        }
        let mut b = [0u8; 8];
        b[..width as usize].copy_from_slice(self.take(width as usize)?);
        Ok(u64::from_le_bytes(b))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        self.wide(8)
    }
}

/// Where emitted bytes go: a buffer with a fixed capacity.
struct Sink<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl Sink<'_> {
    fn room(&self, n: usize) -> Result<(), DecodeError> {
        if n > self.buf.len() - self.len {
            return Err(DecodeError::Overrun);
        }
        Ok(())
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        self.room(bytes.len())?;
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }

    fn full(&self) -> bool {
        self.len == self.buf.len()
    }
}

/// The machine: its register and how deep in SHIFTED runs it is.
struct Machine {
    base: u64,
    depth: usize,
}

impl Machine {
    /// Runs instructions until `sink` is full.
    fn fill(&mut self, r: &mut Reader, sink: &mut Sink) -> Result<(), DecodeError> {
        while !sink.full() {
            self.step(r, sink)?;
        }
        Ok(())
    }

    /// Emits `base` `times` times, each after applying `change`.
    fn emit(
        &mut self,
        sink: &mut Sink,
        times: usize,
        change: impl Fn(u64) -> u64,
    ) -> Result<(), DecodeError> {
        sink.room(times.saturating_mul(8))?;
        for _ in 0..times {
            self.base = change(self.base);
            sink.put(&self.base.to_le_bytes())?;
        }
        Ok(())
    }

    /// One instruction, with its COUNT prefixes (the last one counts).
    fn step(&mut self, r: &mut Reader, sink: &mut Sink) -> Result<(), DecodeError> {
        let mut times: Option<usize> = None;
        loop {
            let b = r.byte()?;
            let (t, n) = (b >> 4, b & 0xf);
            match t {
                tag::COUNT => times = Some(n as usize),
                tag::COUNT8 => times = Some(((n as usize) << 8) | r.byte()? as usize),
                _ => return self.exec(t, n, times, r, sink),
            }
        }
    }

    fn exec(
        &mut self,
        t: u8,
        n: u8,
        times: Option<usize>,
        r: &mut Reader,
        sink: &mut Sink,
    ) -> Result<(), DecodeError> {
        let count = times.unwrap_or(1);
        let single = || match times {
            Some(c) if c != 1 => Err(DecodeError::MisplacedCount(t)),
            _ => Ok(()),
        };
        match t {
            tag::SET => {
                let v = r.wide(n)?;
                self.base = v;
                self.emit(sink, count, |b| b)
            }
            tag::POS => self.emit(sink, count, |b| b.wrapping_add(n as u64)),
            tag::POS_W => {
                let d = r.wide(n)?;
                self.emit(sink, count, |b| b.wrapping_add(d))
            }
            tag::NEG => self.emit(sink, count, |b| b.wrapping_sub(n as u64)),
            tag::NEG_W => {
                let d = r.wide(n)?;
                self.emit(sink, count, |b| b.wrapping_sub(d))
            }
            tag::CONST => {
                single()?;
                self.emit(sink, n as usize, |b| b)
            }
            tag::CONST8 => {
                single()?;
                let c = ((n as usize) << 8) | r.byte()? as usize;
                self.emit(sink, c, |b| b)
            }
            tag::LIT => {
                single()?;
                sink.put(r.take(n as usize)?)
            }
            tag::LIT_W => {
                single()?;
                let len = r.wide(n)?;
                let len = usize::try_from(len).map_err(|_| DecodeError::Overrun)?;
                sink.room(len)?;
                sink.put(r.take(len)?)
            }
            // The established reader ignores a count before a SHIFTED run.
            tag::SHIFTED => self.shifted(((n as usize) << 8) | r.byte()? as usize, r, sink),
            _ => Err(DecodeError::BadTag(t)),
        }
    }

    fn shifted(&mut self, len: usize, r: &mut Reader, sink: &mut Sink) -> Result<(), DecodeError> {
        if self.depth == MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        sink.room(len * 8)?;
        let mut high = vec![0u8; len * 8];
        let mut low = vec![0u8; len * 8];
        self.depth += 1;
        self.fill(
            r,
            &mut Sink {
                buf: &mut high,
                len: 0,
            },
        )?;
        self.fill(
            r,
            &mut Sink {
                buf: &mut low,
                len: 0,
            },
        )?;
        self.depth -= 1;
        for (h, l) in high.chunks_exact(8).zip(low.chunks_exact(8)) {
            let h = u64::from_le_bytes(h.try_into().map_err(|_| DecodeError::Truncated)?);
            let l = u64::from_le_bytes(l.try_into().map_err(|_| DecodeError::Truncated)?);
            sink.put(&((h << SHIFT) | (l & LOW_MASK)).to_le_bytes())?;
        }
        Ok(())
    }
}

/// Runs the instructions of one block from `r` into `out`.
pub fn decode_block(r: &mut Reader, out: &mut Block) -> Result<(), DecodeError> {
    let mut m = Machine { base: 0, depth: 0 };
    let mut sink = Sink {
        buf: &mut out[..],
        len: 0,
    };
    debug_assert_eq!(sink.buf.len(), BLOCK_SIZE);
    m.fill(r, &mut sink)
}

#[cfg(test)]
mod tests {
    use super::super::encode::{shifted_run, u64_run};
    use super::*;

    fn run(values: &[u64], shifted: bool) -> Vec<u64> {
        let mut code = Vec::new();
        if shifted {
            shifted_run(values, &mut code);
        } else {
            u64_run(values, &mut code);
        }
        let mut buf = vec![0u8; values.len() * 8];
        let mut m = Machine { base: 0, depth: 0 };
        let mut r = Reader::new(&code);
        m.fill(
            &mut r,
            &mut Sink {
                buf: &mut buf,
                len: 0,
            },
        )
        .unwrap();
        assert!(r.at_end());
        buf.chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }

    #[test]
    fn runs_round_trip() {
        let cases: Vec<Vec<u64>> = vec![
            vec![0],
            vec![1, 2, 3, 4, 10, 20, 30, 40, 38, 36, 34, 0, 0, 0, 0],
            vec![u64::MAX, 0, u64::MAX, 5, 1 << 40, (1 << 40) + 3],
            (0..500).map(|i| i * 7).collect(),
            (0..5000).map(|i| i / 3).collect(),
            (0..5000).map(|_| 42).collect(),
            (0..300).map(|i| (i << 24) | 7).collect(),
        ];
        for c in &cases {
            assert_eq!(&run(c, false), c);
            if c.len() <= 0xfff {
                assert_eq!(&run(c, true), c);
            }
        }
    }

    fn decode(code: &[u8]) -> Result<Block, DecodeError> {
        let mut b = [0u8; BLOCK_SIZE];
        decode_block(&mut Reader::new(code), &mut b).map(|()| b)
    }

    #[test]
    fn refuses_bad_instructions() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0xc0]), Err(DecodeError::BadTag(12)));
        assert_eq!(decode(&[0x03, 0, 0, 0]), Err(DecodeError::BadWidth(3)));
        // SET 1 byte, then CONST8 4095: 4096 u64s overrun the block.
        assert_eq!(decode(&[0x01, 9, 0x6f, 0xff]), Err(DecodeError::Overrun));
        // A literal longer than the block.
        assert_eq!(decode(&[0xa2, 0x01, 0x10]), Err(DecodeError::Overrun));
        assert_eq!(
            decode(&[0x72, 0x91, 0]),
            Err(DecodeError::MisplacedCount(9))
        );
        // SHIFTED runs nested until the limit.
        assert_eq!(decode(&[0xb0, 1].repeat(10)), Err(DecodeError::TooDeep));
        // A whole literal block decodes.
        let mut code = vec![0xa2, 0x00, 0x10];
        code.extend((0..BLOCK_SIZE).map(|i| i as u8));
        assert_eq!(decode(&code).unwrap()[4095], 255);
    }
}
