//! Reading and validating a superblock (the live one or the metadata
//! snapshot's copy) straight from the device.

use crate::format::superblock::{read_block, Superblock, SuperblockError};
use pdata::io::BlockDevice;

/// Reads the superblock at `loc`: its own block number, magic and
/// checksum must hold.
pub fn read(dev: &dyn BlockDevice, loc: u64) -> Result<Superblock, String> {
    let b = read_block(dev, loc).map_err(|e| SuperblockError::Io(e).to_string())?;
    // The XML guess only explains a block that fails validation: a valid
    // superblock's checksum may well start with '<'.
    Superblock::decode(loc, &b).map_err(|e| {
        if looks_like_xml(&b[..]) {
            "looks like XML: thin_check checks binary metadata only".to_string()
        } else {
            e.to_string()
        }
    })
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
    sb.unsupported().iter().map(|u| u.to_string()).collect()
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
