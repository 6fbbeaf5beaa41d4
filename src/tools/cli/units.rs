//! Size units as the metadata-size estimators (thin_metadata_size,
//! cache_metadata_size) spell, parse and print them: one letter or any
//! prefix of the name, factors of 1024 and 1000, numbers printed whole,
//! with two decimals, or as C's `%.2e` when the fraction is tiny.

/// Unit letters and names, in the order of their factors.
pub const UNIT_CHARS: &[u8] = b"bskKmMgGtTpPeEzZyY";
pub const UNIT_NAMES: [&str; 18] = [
    "bytes",
    "sectors",
    "kibibytes",
    "kilobytes",
    "mebibytes",
    "megabytes",
    "gibibytes",
    "gigabytes",
    "tebibytes",
    "terabytes",
    "pebibytes",
    "petabytes",
    "ebibytes",
    "exabytes",
    "zebibytes",
    "zetabytes",
    "yobibytes",
    "yottabytes",
];
/// The index of the sector unit.
pub const SECTORS: usize = 1;
pub const SECTOR_BYTES: u64 = 512;

/// Bytes per unit; the large ones overflow 64 bits and wrap, as they do in
/// the established tools (so `-u y` divides by zero there too).
pub fn factor(unit: usize) -> u64 {
    let mut f = [
        1u64,
        SECTOR_BYTES,
        1024,
        1000,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ];
    for u in (4..f.len()).step_by(2) {
        f[u] = f[u - 2].wrapping_mul(1024);
        f[u + 1] = f[u - 1].wrapping_mul(1000);
    }
    f[unit]
}

/// A unit by letter, or by any prefix of its name.
pub fn unit_index(s: &str) -> Option<usize> {
    if s.len() == 1 {
        return UNIT_CHARS.iter().position(|&c| c == s.as_bytes()[0]);
    }
    if s.is_empty() {
        return None;
    }
    UNIT_NAMES.iter().position(|n| n.starts_with(s))
}

/// How `-n` asks for the result.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Numeric {
    /// No `-n`: the tool's full sentence.
    Full,
    /// `-n`: the number alone.
    Number,
    /// `-n short`: the number and the unit's letter.
    Short,
    /// `-n long`: the number and the unit's name.
    Long,
}

/// `-n`'s optional argument: none, or a prefix of `short` or `long`.
pub fn parse_numeric(arg: Option<&str>) -> Option<Numeric> {
    match arg {
        None => Some(Numeric::Number),
        Some("") => None,
        Some(a) if "long".starts_with(a) => Some(Numeric::Long),
        Some(a) if "short".starts_with(a) => Some(Numeric::Short),
        Some(_) => None,
    }
}

/// `value` (already in `unit`) with the unit as `numeric` asks: `N name`,
/// `N`, `Nc` or `Nname`.
pub fn show(value: f64, unit: usize, numeric: Numeric) -> String {
    let n = format_number(value);
    match numeric {
        Numeric::Full => format!("{n} {}", UNIT_NAMES[unit]),
        Numeric::Number => n,
        Numeric::Short => format!("{n}{}", UNIT_CHARS[unit] as char),
        Numeric::Long => format!("{n}{}", UNIT_NAMES[unit]),
    }
}

/// A whole number as an integer (x86-64's conversion: 2^64 and beyond,
/// infinity included, come out as 0); otherwise two decimals, or C's
/// `%.2e` when the fraction is tiny.
pub fn format_number(r: f64) -> String {
    let whole = r.floor();
    if r == whole {
        let two_63 = 9_223_372_036_854_775_808.0;
        let n = if r < two_63 {
            r as u64
        } else if r < 2.0 * two_63 {
            (r - two_63) as u64 | (1 << 63)
        } else {
            0
        };
        return n.to_string();
    }
    if r - whole < 1e-2 {
        c_exp(r)
    } else {
        format!("{r:.2}")
    }
}

/// C's `%.2e`: the exponent signed and at least two digits.
fn c_exp(r: f64) -> String {
    let s = format!("{r:.2e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            let sign = if e < 0 { '-' } else { '+' };
            format!("{mantissa}e{sign}{:02}", e.unsigned_abs())
        }
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_formats() {
        assert_eq!(c_exp(4.001), "4.00e+00");
        assert_eq!(c_exp(1.234e-19), "1.23e-19");
        assert_eq!(format_number(f64::INFINITY), "0");
    }

    #[test]
    fn units() {
        assert_eq!(unit_index("k"), Some(2));
        assert_eq!(unit_index("kibi"), Some(2));
        assert_eq!(unit_index("se"), Some(SECTORS));
        assert_eq!(unit_index(""), None);
        assert_eq!(factor(4), 1 << 20);
        assert_eq!(parse_numeric(Some("s")), Some(Numeric::Short));
        assert_eq!(parse_numeric(Some("")), None);
        assert_eq!(show(4.5, 2, Numeric::Short), "4.50k");
    }
}
