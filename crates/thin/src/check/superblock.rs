//! Reading and validating a superblock (the live one or the metadata
//! snapshot's copy) straight from the device.

use crate::format::superblock::{Superblock, BLOCKNR, MAGIC, THIN_MAGIC};
use pdata::block_manager::le64;
use pdata::checksum::{verify, SALT_THIN_SUPERBLOCK};
use pdata::io::BlockDevice;

/// Versions with the layout we know (1 and 2 share it).
pub const VERSIONS: std::ops::RangeInclusive<u32> = 1..=2;

/// Reads the superblock at `loc`: its own block number, magic and
/// checksum must hold.
pub fn read(dev: &dyn BlockDevice, loc: u64) -> Result<Superblock, String> {
    let mut b = [0u8; pdata::BLOCK_SIZE];
    dev.read_block(loc, &mut b)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if b.iter().all(|&x| x == 0) {
        return Err("is all zeroes (unformatted metadata)".into());
    }
    // The XML guess only explains a block that fails validation: a valid
    // superblock's checksum may well start with '<'.
    let invalid = |why: String| {
        if looks_like_xml(&b) {
            "looks like XML: thin_check checks binary metadata only".to_string()
        } else {
            why
        }
    };
    let found = le64(&b, BLOCKNR);
    if found != loc {
        return Err(invalid(format!("claims to be block {found}")));
    }
    let magic = le64(&b, MAGIC);
    if magic != THIN_MAGIC {
        return Err(invalid(format!("has magic {magic}, not {THIN_MAGIC}")));
    }
    if !verify(&b, SALT_THIN_SUPERBLOCK) {
        return Err(invalid("has a bad checksum".into()));
    }
    Ok(Superblock::unpack(&b))
}

/// ASCII text opening with `<superblock` or `<?xml` after blanks, as a
/// dump does.
fn looks_like_xml(b: &[u8]) -> bool {
    let text = b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]);
    let start = text.iter().position(|c| !c.is_ascii_whitespace());
    text.is_ascii()
        && start.is_some_and(|i| {
            text[i..].starts_with(b"<superblock") || text[i..].starts_with(b"<?xml")
        })
}

/// Fields of a live superblock that the kernel would refuse.
pub fn unsupported(sb: &Superblock) -> Vec<String> {
    let mut out = Vec::new();
    if !VERSIONS.contains(&sb.version) {
        out.push(format!("unknown metadata version {}", sb.version));
    }
    if sb.incompat_flags != 0 {
        out.push(format!(
            "unsupported incompatible features {:#x}",
            sb.incompat_flags
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pdata::io::MemoryDevice;

    #[test]
    fn a_valid_superblock_is_never_taken_for_xml() {
        // A block whose text part is just "<" is what a checksum starting
        // with 0x3c followed by a zero byte looks like.
        let mut b = [0u8; pdata::BLOCK_SIZE];
        b[0] = b'<';
        assert!(!looks_like_xml(&b));
        let xml = b"<superblock uuid=\"\" time=\"0\">\n";
        b[..xml.len()].copy_from_slice(xml);
        assert!(looks_like_xml(&b));
        let dev = MemoryDevice::from_image(b.to_vec());
        assert!(read(&dev, 0).unwrap_err().contains("XML"));
    }
}
