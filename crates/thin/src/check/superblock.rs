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
    if looks_like_xml(&b) {
        return Err("looks like XML: thin_check checks binary metadata only".into());
    }
    let found = le64(&b, BLOCKNR);
    if found != loc {
        return Err(format!("claims to be block {found}"));
    }
    let magic = le64(&b, MAGIC);
    if magic != THIN_MAGIC {
        return Err(format!("has magic {magic}, not {THIN_MAGIC}"));
    }
    if !verify(&b, SALT_THIN_SUPERBLOCK) {
        return Err("has a bad checksum".into());
    }
    Ok(Superblock::unpack(&b))
}

/// Text starting with '<' after blanks, as thin_dump writes.
fn looks_like_xml(b: &[u8]) -> bool {
    let text = b.iter().position(|&c| c == 0).map_or(b, |n| &b[..n]);
    text.iter().all(|c| c.is_ascii())
        && text.iter().find(|c| !c.is_ascii_whitespace()) == Some(&b'<')
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
