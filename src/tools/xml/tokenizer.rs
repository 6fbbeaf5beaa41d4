//! Streaming tokenizer for machine-written XML: tags with their attributes
//! as byte slices into a refilled buffer, no allocation per tag. Text
//! between tags, comments, processing instructions and declarations are
//! skipped. Entities in attribute values are left as written.

use anyhow::{bail, Result};
use std::io::{ErrorKind, Read};

/// Bytes read at a time.
const READ_SIZE: usize = 1 << 20;
/// A tag that starts with fewer bytes than this left in the buffer is
/// parsed after a refill, so that it almost never has to be parsed twice.
const LOOKAHEAD: usize = 64 << 10;
/// Larger tags are refused.
const MAX_TAG: usize = 16 << 20;
pub const MAX_ATTRS: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `<x ...>`
    Open,
    /// `</x>`
    Close,
    /// `<x .../>`
    Empty,
}

/// Where a tag's pieces are, as offsets into its text.
#[derive(Clone, Copy)]
struct RawTag {
    name: (u32, u32),
    kind: Kind,
    /// (key start, key end, value start, value end)
    attrs: [[u32; 4]; MAX_ATTRS],
    nr_attrs: usize,
}

pub struct Tag<'a> {
    text: &'a [u8],
    raw: &'a RawTag,
    /// Line of the tag's `<`.
    pub line: usize,
}

impl<'a> Tag<'a> {
    pub fn name(&self) -> &'a [u8] {
        &self.text[self.raw.name.0 as usize..self.raw.name.1 as usize]
    }

    pub fn kind(&self) -> Kind {
        self.raw.kind
    }

    /// The raw value of attribute `key`.
    #[inline]
    pub fn attr(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.attrs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn attrs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        let text = self.text;
        self.raw.attrs[..self.raw.nr_attrs].iter().map(move |a| {
            let [k0, k1, v0, v1] = a.map(|x| x as usize);
            (&text[k0..k1], &text[v0..v1])
        })
    }

    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(self.name()).into_owned()
    }
}

pub struct Tokenizer<R: Read> {
    src: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    line: usize,
    /// The last tag parsed.
    raw: RawTag,
}

/// What a parse attempt on the buffered bytes found.
enum Parsed {
    /// A tag (in the tokenizer's `raw`): its length and the newlines in it.
    Tag(usize, usize),
    /// A comment, declaration or instruction of this many bytes.
    Skip(usize),
    /// The tag goes past the buffered bytes.
    Incomplete,
}

#[inline]
fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\n' | b'\t' | b'\r')
}

impl<R: Read> Tokenizer<R> {
    pub fn new(src: R) -> Self {
        Tokenizer {
            src,
            buf: vec![0; READ_SIZE + LOOKAHEAD],
            pos: 0,
            end: 0,
            eof: false,
            line: 1,
            raw: RawTag {
                name: (0, 0),
                kind: Kind::Open,
                attrs: [[0; 4]; MAX_ATTRS],
                nr_attrs: 0,
            },
        }
    }

    /// The line the tokenizer has reached.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Moves the unread bytes to the front and reads more, growing the
    /// buffer if it is full.
    fn refill(&mut self) -> Result<()> {
        self.buf.copy_within(self.pos..self.end, 0);
        self.end -= self.pos;
        self.pos = 0;
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_TAG {
                bail!("line {}: a tag longer than {MAX_TAG} bytes", self.line);
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        while self.end < self.buf.len() {
            match self.src.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => {
                    self.end += n;
                    if self.end - self.pos >= READ_SIZE {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => bail!("reading the input: {e}"),
            }
        }
        Ok(())
    }

    /// Moves to the next markup ('<'), with at least a tag's worth of
    /// bytes buffered after it where the input has them; false at the end.
    pub fn next_markup(&mut self) -> Result<bool> {
        loop {
            while self.pos < self.end {
                let c = self.buf[self.pos];
                if c == b'<' {
                    break;
                }
                self.line += usize::from(c == b'\n');
                self.pos += 1;
            }
            if self.pos < self.end {
                if self.end - self.pos < LOOKAHEAD && !self.eof {
                    self.refill()?;
                }
                return Ok(true);
            }
            if self.eof {
                return Ok(false);
            }
            self.refill()?;
        }
    }

    /// The buffered bytes from the current position.
    pub fn peek(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Skips `n` bytes of `peek()`, which hold no newline.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(!self.buf[self.pos..self.pos + n].contains(&b'\n'));
        self.pos += n;
    }

    /// The next tag, or None at the end of the input.
    pub fn next_tag(&mut self) -> Result<Option<Tag<'_>>> {
        loop {
            if !self.next_markup()? {
                return Ok(None);
            }
            let (line, pos) = (self.line, self.pos);
            match parse(&self.buf[pos..self.end], line, &mut self.raw)? {
                Parsed::Incomplete => {
                    if self.eof {
                        bail!("line {line}: the input ends inside a tag");
                    }
                    self.refill()?;
                }
                Parsed::Skip(n) => {
                    self.line += count_lines(&self.buf[pos..pos + n]);
                    self.pos += n;
                }
                Parsed::Tag(n, newlines) => {
                    let text = &self.buf[pos..pos + n];
                    self.line += newlines;
                    self.pos += n;
                    return Ok(Some(Tag {
                        text,
                        raw: &self.raw,
                        line,
                    }));
                }
            }
        }
    }
}

fn count_lines(s: &[u8]) -> usize {
    s.iter().filter(|&&c| c == b'\n').count()
}

/// Finds `pat` in `s` from `from`.
fn find(s: &[u8], from: usize, pat: &[u8]) -> Option<usize> {
    s.get(from..)?
        .windows(pat.len())
        .position(|w| w == pat)
        .map(|i| from + i)
}

/// Parses the markup at the start of `s` (which begins with '<'); a tag's
/// pieces go to `tag`.
fn parse(s: &[u8], line: usize, tag: &mut RawTag) -> Result<Parsed> {
    let len = s.len();
    if len < 2 {
        return Ok(Parsed::Incomplete);
    }
    match s[1] {
        b'?' => {
            return Ok(match find(s, 2, b"?>") {
                Some(e) => Parsed::Skip(e + 2),
                None => Parsed::Incomplete,
            })
        }
        b'!' => {
            let close: &[u8] = if s.starts_with(b"<!--") { b"-->" } else { b">" };
            return Ok(match find(s, 2, close) {
                Some(e) => Parsed::Skip(e + close.len()),
                None => Parsed::Incomplete,
            });
        }
        _ => {}
    }
    let closing = s[1] == b'/';
    let mut i = if closing { 2 } else { 1 };
    let start = i;
    while i < len && !is_space(s[i]) && s[i] != b'/' && s[i] != b'>' {
        i += 1;
    }
    if i == len {
        return Ok(Parsed::Incomplete);
    }
    if i == start {
        bail!("line {line}: a tag without a name");
    }
    let name_end = i;
    let name = || String::from_utf8_lossy(&s[start..name_end]).into_owned();
    let mut nl = 0;
    tag.name = (start as u32, i as u32);
    tag.nr_attrs = 0;
    loop {
        while i < len && is_space(s[i]) {
            nl += usize::from(s[i] == b'\n');
            i += 1;
        }
        if i == len {
            return Ok(Parsed::Incomplete);
        }
        match s[i] {
            b'>' => {
                tag.kind = if closing { Kind::Close } else { Kind::Open };
                return Ok(Parsed::Tag(i + 1, nl));
            }
            b'/' => {
                if i + 1 == len {
                    return Ok(Parsed::Incomplete);
                }
                if s[i + 1] != b'>' || closing {
                    bail!("line {line}: stray '/' in <{}>", name());
                }
                tag.kind = Kind::Empty;
                return Ok(Parsed::Tag(i + 2, nl));
            }
            _ if closing => bail!("line {line}: attributes in </{}>", name()),
            _ => {}
        }
        let kstart = i;
        while i < len && s[i] != b'=' && !is_space(s[i]) && s[i] != b'>' && s[i] != b'/' {
            i += 1;
        }
        let kend = i;
        let key = &s[kstart..kend];
        while i < len && is_space(s[i]) {
            nl += usize::from(s[i] == b'\n');
            i += 1;
        }
        if i == len {
            return Ok(Parsed::Incomplete);
        }
        if s[i] != b'=' {
            bail!(
                "line {line}: attribute {} of <{}> has no value",
                String::from_utf8_lossy(key),
                name()
            );
        }
        i += 1;
        while i < len && is_space(s[i]) {
            nl += usize::from(s[i] == b'\n');
            i += 1;
        }
        if i == len {
            return Ok(Parsed::Incomplete);
        }
        let quote = s[i];
        if quote != b'"' && quote != b'\'' {
            bail!(
                "line {line}: the value of {} in <{}> is not quoted",
                String::from_utf8_lossy(key),
                name()
            );
        }
        i += 1;
        let vstart = i;
        while i < len && s[i] != quote {
            nl += usize::from(s[i] == b'\n');
            i += 1;
        }
        if i == len {
            return Ok(Parsed::Incomplete);
        }
        if tag.nr_attrs == MAX_ATTRS {
            bail!("line {line}: too many attributes in <{}>", name());
        }
        tag.attrs[tag.nr_attrs] = [kstart, kend, vstart, i].map(|x| x as u32);
        tag.nr_attrs += 1;
        i += 1;
    }
}

/// A decimal number attribute value.
#[inline]
pub fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 {
        return None;
    }
    let mut n: u64 = 0;
    if v.len() < 20 {
        for &c in v {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n * 10 + d as u64;
        }
        Some(n)
    } else {
        for &c in v {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                return None;
            }
            n = n.checked_mul(10)?.checked_add(d as u64)?;
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, kind, line, attributes) of each tag.
    type Seen = (String, Kind, usize, Vec<(String, String)>);

    fn all(text: &str) -> Result<Vec<Seen>> {
        let mut t = Tokenizer::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(tag) = t.next_tag()? {
            let attrs = tag
                .attrs()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
                .collect();
            out.push((tag.name_str(), tag.kind(), tag.line, attrs));
        }
        Ok(out)
    }

    #[test]
    fn tags_attributes_and_lines() {
        let got = all("<?xml version=\"1.0\"?>\n<!-- a > b\n -->\n<a x=\"1\" y = '2>'\n z=\"\">\n  <b/>\n</a>\n").unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].0, "a");
        assert_eq!(got[0].1, Kind::Open);
        assert_eq!(got[0].2, 4);
        assert_eq!(
            got[0].3,
            vec![
                ("x".into(), "1".into()),
                ("y".into(), "2>".into()),
                ("z".into(), "".into())
            ]
        );
        assert_eq!((got[1].1, got[1].2), (Kind::Empty, 6));
        assert_eq!((got[2].1, got[2].2), (Kind::Close, 7));
    }

    #[test]
    fn errors() {
        assert!(all("<a x=\"1\"")
            .unwrap_err()
            .to_string()
            .contains("ends inside"));
        assert!(all("<a x=1>")
            .unwrap_err()
            .to_string()
            .contains("not quoted"));
        assert!(all("\n<a x>").unwrap_err().to_string().contains("line 2"));
        assert!(all("<>").is_err());
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u64(b"0"), Some(0));
        assert_eq!(parse_u64(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_u64(b"18446744073709551616"), None);
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"12a"), None);
        assert_eq!(parse_u64(b"-1"), None);
    }

    #[test]
    fn tags_across_refills() {
        let mut text = String::from("<s>\n");
        for i in 0..200_000 {
            text += &format!("<m o=\"{i}\"/>\n");
        }
        text += "</s>\n";
        let mut t = Tokenizer::new(text.as_bytes());
        let mut n = 0u64;
        while let Some(tag) = t.next_tag().unwrap() {
            if tag.name() == b"m" {
                assert_eq!(parse_u64(tag.attr(b"o").unwrap()), Some(n));
                assert_eq!(tag.line as u64, n + 2);
                n += 1;
            }
        }
        assert_eq!(n, 200_000);
    }
}
