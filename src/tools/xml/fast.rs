//! Pieces for a schema's fast path: its hottest tags, as its writers lay
//! them out (attributes in a fixed order, double quotes, one space),
//! recognised straight from the bytes `Tokenizer::peek` shows. Whatever
//! does not match exactly is declined (None) and left to the tokenizer,
//! which also reports the errors.

/// The decimal digits at the start of `s` up to a '"': (value, digits).
/// At most 19 digits: a longer number is declined.
#[inline]
fn quoted_number(s: &[u8]) -> Option<(u64, usize)> {
    let mut n: u64 = 0;
    for (i, &c) in s.iter().enumerate().take(20) {
        if c == b'"' {
            return (i > 0).then_some((n, i));
        }
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(d as u64)?;
    }
    None
}

/// At `*at` in `s`: `prefix` (which ends with the opening quote, e.g.
/// `b" length=\""`), a number and the closing quote; `*at` moves past them.
#[inline]
pub fn number_field(s: &[u8], at: &mut usize, prefix: &[u8]) -> Option<u64> {
    let rest = s.get(*at..)?.strip_prefix(prefix)?;
    let (v, n) = quoted_number(rest)?;
    *at += prefix.len() + n + 1;
    Some(v)
}

/// Whether the tag ends with `/>` at `at`; the tag's length if so.
#[inline]
pub fn empty_tag_end(s: &[u8], at: usize) -> Option<usize> {
    s.get(at..)?.starts_with(b"/>").then_some(at + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_in_order() {
        let s = b"<m a=\"12\" b=\"0\"/>";
        let mut at = 0;
        assert_eq!(number_field(s, &mut at, b"<m a=\""), Some(12));
        assert_eq!(number_field(s, &mut at, b" b=\""), Some(0));
        assert_eq!(empty_tag_end(s, at), Some(s.len()));
        // Empty, not digits, too long, unclosed, single quotes.
        let bad = ["\"\"", "\"1x\"", "\"99999999999999999999\"", "\"12", "'1'"];
        for value in bad {
            let tag = format!("<m a={value}");
            assert_eq!(number_field(tag.as_bytes(), &mut 0, b"<m a=\""), None);
        }
        // Up to 19 digits here; longer numbers are the tokenizer's.
        assert_eq!(
            number_field(b"<m a=\"1000000000000000000\"", &mut 0, b"<m a=\""),
            Some(10u64.pow(18))
        );
        assert_eq!(
            number_field(b"<m a=\"18446744073709551615\"", &mut 0, b"<m a=\""),
            None
        );
        assert_eq!(empty_tag_end(b"<m>", 2), None);
    }
}
