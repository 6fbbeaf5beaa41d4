//! The buffered XML writer a client's schema writes its tags with: markup
//! as given, numbers formatted without allocation, text attributes escaped.
//! The buffer goes to the output in large writes, so a dump of millions of
//! tags costs a few hundred system calls.

use super::escape::escape_attr;
use std::io::{self, Write};

/// Write the buffer to the output past this many bytes.
const FLUSH_AT: usize = 256 * 1024;
/// Room for the tag that crosses `FLUSH_AT`, so the buffer never grows.
const SLACK: usize = 4096;

pub struct XmlOut<W: Write> {
    out: W,
    buf: Vec<u8>,
    num: itoa::Buffer,
}

impl<W: Write> XmlOut<W> {
    pub fn new(out: W) -> Self {
        XmlOut {
            out,
            buf: Vec::with_capacity(FLUSH_AT + SLACK),
            num: itoa::Buffer::new(),
        }
    }

    /// Markup (indentation, `<name`, `>\n`, `/>\n`) as it is: the caller
    /// knows it needs no escaping.
    #[inline]
    pub fn markup(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// ` name="value"` for a number.
    #[inline]
    pub fn num_attr(&mut self, name: &[u8], value: impl itoa::Integer) {
        self.buf.push(b' ');
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"=\"");
        self.buf
            .extend_from_slice(self.num.format(value).as_bytes());
        self.buf.push(b'"');
    }

    /// ` name="value"` for each number of a list.
    pub fn num_attrs(&mut self, attrs: &[(&[u8], u64)]) {
        for &(name, value) in attrs {
            self.num_attr(name, value);
        }
    }

    /// ` name="value"` for text, escaped.
    pub fn text_attr(&mut self, name: &[u8], value: &str) {
        self.buf.push(b' ');
        self.buf.extend_from_slice(name);
        self.buf.extend_from_slice(b"=\"");
        escape_attr(&mut self.buf, value.as_bytes());
        self.buf.push(b'"');
    }

    /// Passes the buffer on once it is large; call after each tag.
    #[inline]
    pub fn spill(&mut self) -> io::Result<()> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Writes out everything buffered and flushes the output.
    pub fn finish(&mut self) -> io::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_with_numbers_and_escaped_text() {
        let mut text = Vec::new();
        let w = &mut XmlOut::new(&mut text);
        w.markup(b"<cache");
        w.text_attr(b"policy", "a\"b'<c>&d");
        w.num_attr(b"block_size", 128u32);
        w.num_attr(b"nr", u64::MAX);
        w.markup(b"/>\n");
        w.spill().unwrap();
        w.finish().unwrap();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            "<cache policy=\"a&quot;b&apos;&lt;c&gt;&amp;d\" block_size=\"128\" nr=\"18446744073709551615\"/>\n"
        );
    }

    #[test]
    fn large_output_is_written_in_pieces_and_whole() {
        let mut text = Vec::new();
        let mut w = XmlOut::new(&mut text);
        for i in 0..100_000u64 {
            w.markup(b"<m");
            w.num_attr(b"i", i);
            w.markup(b"/>\n");
            w.spill().unwrap();
        }
        w.finish().unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.lines().count(), 100_000);
        assert_eq!(text.lines().last(), Some("<m i=\"99999\"/>"));
    }
}
