//! The fast path for the mapping tags, as both established tools write
//! them (attributes in their fixed order, double quotes, one space):
//! recognised straight from the bytes. Anything else, including every
//! malformed tag, is left to the general tokenizer, which reports errors.

use thin::ir::Run;

/// Parses the decimal digits at the start of `s` up to a '"': (value, bytes).
#[inline]
fn number(s: &[u8]) -> Option<(u64, usize)> {
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

/// Reads `prefix`, a number, then the closing quote.
#[inline]
fn field(s: &[u8], at: &mut usize, prefix: &[u8]) -> Option<u64> {
    let rest = s.get(*at..)?.strip_prefix(prefix)?;
    let (v, n) = number(rest)?;
    *at += prefix.len() + n + 1;
    Some(v)
}

/// A mapping tag at the start of `s`: the run and the tag's length.
pub fn mapping(s: &[u8]) -> Option<(Run, usize)> {
    let mut at = 0;
    let (origin, data, len) = if s.starts_with(b"<single_mapping ") {
        let origin = field(s, &mut at, b"<single_mapping origin_block=\"")?;
        let data = field(s, &mut at, b" data_block=\"")?;
        (origin, data, 1)
    } else {
        let origin = field(s, &mut at, b"<range_mapping origin_begin=\"")?;
        let data = field(s, &mut at, b" data_begin=\"")?;
        let len = field(s, &mut at, b" length=\"")?;
        (origin, data, len)
    };
    let time = u32::try_from(field(s, &mut at, b" time=\"")?).ok()?;
    if !s.get(at..)?.starts_with(b"/>") {
        return None;
    }
    if len == 0 || origin.checked_add(len).is_none() || data.checked_add(len).is_none() {
        return None;
    }
    let run = Run {
        origin,
        data,
        len,
        time,
    };
    Some((run, at + 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_both_tags_and_declines_the_rest() {
        let (r, n) =
            mapping(b"<single_mapping origin_block=\"5\" data_block=\"7\" time=\"1\"/>\n").unwrap();
        assert_eq!((r.origin, r.data, r.len, r.time, n), (5, 7, 1, 1, 58));
        let (r, n) = mapping(
            b"<range_mapping origin_begin=\"10\" data_begin=\"20\" length=\"30\" time=\"4\"/>",
        )
        .unwrap();
        assert_eq!((r.origin, r.data, r.len, r.time, n), (10, 20, 30, 4, 71));
        for s in [
            &b"<single_mapping origin_block=\"5\" data_block=\"7\" time=\"1\">"[..],
            b"<single_mapping origin_block=\"5\" data_block=\"x\" time=\"1\"/>",
            b"<single_mapping data_block=\"7\" origin_block=\"5\" time=\"1\"/>",
            b"<single_mapping origin_block='5' data_block='7' time='1'/>",
            b"<single_mapping origin_block=\"5\" data_block=\"7\" time=\"4294967296\"/>",
            b"<range_mapping origin_begin=\"1\" data_begin=\"2\" length=\"0\" time=\"4\"/>",
            b"<single_mapping origin_block=\"\" data_block=\"7\" time=\"1\"/>",
            b"<single_mapping origin_block=\"99999999999999999999\" data_block=\"7\" time=\"1\"/>",
            b"<single_mapping origin_block=\"5\" data_bl",
            b"<device dev_id=\"1\"/>",
        ] {
            assert!(mapping(s).is_none(), "{}", String::from_utf8_lossy(s));
        }
    }
}
