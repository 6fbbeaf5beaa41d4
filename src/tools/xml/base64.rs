//! Standard base64 with padding (RFC 4648), for binary attribute values
//! (cache's hints).

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the encoding of `data` to `out`.
pub fn encode(data: &[u8], out: &mut Vec<u8>) {
    for c in data.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
}

fn value(c: u8) -> Option<u32> {
    Some(match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    } as u32)
}

/// Decodes `text` into `out` (cleared first); None if it is not base64.
pub fn decode(text: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.clear();
    if !text.len().is_multiple_of(4) {
        return None;
    }
    let quads = text.len() / 4;
    for (q, c) in text.chunks_exact(4).enumerate() {
        let pad = if q + 1 == quads {
            c.iter().rev().take_while(|&&x| x == b'=').count()
        } else {
            0
        };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &x in &c[..4 - pad] {
            n = n << 6 | value(x)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refusals() {
        for data in [
            &b""[..],
            b"\x01\0\0\0",
            b"ab",
            b"abc",
            b"\xff\xfe\xfd\xfc\xfb",
        ] {
            let mut e = Vec::new();
            encode(data, &mut e);
            let mut d = Vec::new();
            decode(&e, &mut d).unwrap();
            assert_eq!(d, data);
        }
        let mut e = Vec::new();
        encode(&[1, 0, 0, 0], &mut e);
        assert_eq!(e, b"AQAAAA==");
        let mut d = Vec::new();
        for bad in [&b"AQA"[..], b"A===", b"AQ*A", b"AQ==AQ=="] {
            assert!(decode(bad, &mut d).is_none(), "{bad:?}");
        }
    }
}
