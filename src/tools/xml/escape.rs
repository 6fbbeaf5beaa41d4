//! Attribute text in and out of XML. Written values may hold anything a
//! string can (a cache policy name, a uuid): `& < > " '` become the
//! predefined entities, and tab, newline and carriage return character
//! references, since a reader would otherwise turn them into spaces.
//! Other control characters cannot be written in XML 1.0 at all and are
//! passed as they are.

use std::borrow::Cow;

/// The entity `c` is written as in attribute text, if any.
#[inline]
fn entity(c: u8) -> Option<&'static [u8]> {
    Some(match c {
        b'&' => b"&amp;",
        b'<' => b"&lt;",
        b'>' => b"&gt;",
        b'"' => b"&quot;",
        b'\'' => b"&apos;",
        b'\t' => b"&#9;",
        b'\n' => b"&#10;",
        b'\r' => b"&#13;",
        _ => return None,
    })
}

/// Appends `text` to `out` escaped for a quoted attribute value.
pub fn escape_attr(out: &mut Vec<u8>, text: &[u8]) {
    let mut plain = 0;
    for (i, &c) in text.iter().enumerate() {
        if let Some(e) = entity(c) {
            out.extend_from_slice(&text[plain..i]);
            out.extend_from_slice(e);
            plain = i + 1;
        }
    }
    out.extend_from_slice(&text[plain..]);
}

/// The character an entity or character reference (without its `&` and
/// `;`) stands for.
fn decode(name: &[u8]) -> Option<char> {
    match name {
        b"amp" => Some('&'),
        b"lt" => Some('<'),
        b"gt" => Some('>'),
        b"quot" => Some('"'),
        b"apos" => Some('\''),
        _ => {
            let digits = std::str::from_utf8(name.strip_prefix(b"#")?).ok()?;
            let code = match digits.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => digits.parse().ok()?,
            };
            char::from_u32(code)
        }
    }
}

/// Attribute text as written -> the text it stands for. What is not a
/// known entity or a valid character reference (a lone `&`) is kept as
/// written, so no value is refused here.
pub fn unescape_attr(v: &[u8]) -> Cow<'_, [u8]> {
    if !v.contains(&b'&') {
        return Cow::Borrowed(v);
    }
    let mut out = Vec::with_capacity(v.len());
    let mut i = 0;
    while i < v.len() {
        if v[i] == b'&' {
            // Entity names are short; a longer run is not one.
            let name_len = v[i + 1..].iter().take(12).position(|&c| c == b';');
            if let Some((c, n)) = name_len.and_then(|n| Some((decode(&v[i + 1..i + 1 + n])?, n))) {
                let mut utf8 = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                i += n + 2;
                continue;
            }
        }
        out.push(v[i]);
        i += 1;
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &str) -> String {
        let mut out = Vec::new();
        escape_attr(&mut out, s.as_bytes());
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_what_attribute_text_cannot_hold() {
        assert_eq!(escaped(""), "");
        assert_eq!(escaped("smq"), "smq");
        assert_eq!(escaped("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escaped("\t\n\r"), "&#9;&#10;&#13;");
        assert_eq!(escaped("&amp;"), "&amp;amp;");
        assert_eq!(escaped("é ü"), "é ü");
    }

    #[test]
    fn unescapes_entities_and_references() {
        let un = |s: &str| String::from_utf8(unescape_attr(s.as_bytes()).into_owned()).unwrap();
        assert_eq!(un("plain"), "plain");
        assert!(matches!(unescape_attr(b"plain"), Cow::Borrowed(_)));
        assert_eq!(un("&lt;&gt;&amp;&quot;&apos;"), "<>&\"'");
        assert_eq!(un("&#65;&#x42;&#9;"), "AB\t");
        // Not entities: kept as written.
        assert_eq!(
            un("a & b &bogus; &#xZZ; &#1114112; &"),
            "a & b &bogus; &#xZZ; &#1114112; &"
        );
    }

    #[test]
    fn round_trips_any_text() {
        for s in [
            "",
            "policy<&>\"'",
            "tab\there\nnew\rline",
            "&amp; already",
            "mixed ünïcode & <tags/>",
        ] {
            let mut out = Vec::new();
            escape_attr(&mut out, s.as_bytes());
            assert!(!out.iter().any(|c| b"<>\"'\n\t\r".contains(c)));
            assert_eq!(unescape_attr(&out), s.as_bytes());
        }
    }
}
