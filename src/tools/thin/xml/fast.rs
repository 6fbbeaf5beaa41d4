//! The fast path for the mapping tags, as both established tools write
//! them: recognised straight from the bytes (see [`crate::tools::xml::fast`]).
//! Anything else, including every malformed tag, is left to the general
//! tokenizer, which reports errors.

use crate::tools::xml::fast::{empty_tag_end, number_field};
use thin::ir::Run;

/// A mapping tag at the start of `s`: the run and the tag's length.
pub fn mapping(s: &[u8]) -> Option<(Run, usize)> {
    let mut at = 0;
    let (origin, data, len) = if s.starts_with(b"<single_mapping ") {
        let origin = number_field(s, &mut at, b"<single_mapping origin_block=\"")?;
        let data = number_field(s, &mut at, b" data_block=\"")?;
        (origin, data, 1)
    } else {
        let origin = number_field(s, &mut at, b"<range_mapping origin_begin=\"")?;
        let data = number_field(s, &mut at, b" data_begin=\"")?;
        let len = number_field(s, &mut at, b" length=\"")?;
        (origin, data, len)
    };
    let time = u32::try_from(number_field(s, &mut at, b" time=\"")?).ok()?;
    let end = empty_tag_end(s, at)?;
    if len == 0 || origin.checked_add(len).is_none() || data.checked_add(len).is_none() {
        return None;
    }
    let run = Run {
        origin,
        data,
        len,
        time,
    };
    Some((run, end))
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
