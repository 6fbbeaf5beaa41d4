//! Pools to test on, built by our `thin_exec` or by Debian's `thin_restore`.

use super::oracle::debian;
use super::tool::{new_file, run, PDT};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `script` through `pdt thin_exec` on a blank metadata file
/// `dir/name` of `bytes` bytes, which it returns.
pub fn exec_pool(dir: &Path, name: &str, bytes: u64, script: &str) -> PathBuf {
    let meta = dir.join(name);
    new_file(&meta, bytes);
    let script_path = dir.join(format!("{name}.script"));
    std::fs::write(&script_path, script).expect("write the script");
    let o = run(Command::new(PDT)
        .arg("thin_exec")
        .arg(&meta)
        .arg(&script_path));
    assert!(
        o.status.success(),
        "thin_exec failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    meta
}

/// Debian's `thin_restore` of `xml` into a blank metadata file `dir/name`
/// of `bytes` bytes, which it returns.
pub fn debian_restore(dir: &Path, name: &str, bytes: u64, xml: &str) -> PathBuf {
    let xml_path = dir.join(format!("{name}.xml"));
    std::fs::write(&xml_path, xml).expect("write the XML");
    let meta = dir.join(name);
    new_file(&meta, bytes);
    let o = run(Command::new(debian("thin_restore"))
        .arg("-i")
        .arg(&xml_path)
        .arg("-o")
        .arg(&meta));
    assert!(
        o.status.success(),
        "Debian's thin_restore failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    meta
}

/// Sets data block `b`'s count to zero in its space-map bitmap (resealed):
/// the damage thin_trim must not act on.
pub fn free_in_space_map(meta: &Path, b: u64) {
    use pdata::block_manager::Validator;
    use pdata::io::BlockDevice;
    use pdata::live::LiveMetadata;
    use pdata::space_map::format::{bitmap_set, IndexEntry, BITMAP_VALIDATOR, ENTRIES_PER_BITMAP};
    use std::sync::Arc;
    let dev: Arc<dyn BlockDevice> = Arc::new(pdata::io::FileDevice::open(meta, true).unwrap());
    let md = thin::ThinMetadata::open(dev.clone(), false).unwrap();
    let mut loc = None;
    let root = md.superblock().data_sm_root.bitmap_root;
    pdata::btree::walk(md.transaction_manager(), root, &mut |k, v| {
        if k == b / ENTRIES_PER_BITMAP {
            loc = Some(IndexEntry::unpack(v).blocknr);
        }
        Ok(())
    })
    .unwrap();
    drop(md);
    let loc = loc.expect("bitmap");
    let mut block = pdata::block_manager::new_block_buffer();
    dev.read_block(loc, &mut block).unwrap();
    bitmap_set(&mut block, b % ENTRIES_PER_BITMAP, 0);
    BITMAP_VALIDATOR.prepare_for_write(loc, &mut block).unwrap();
    dev.write_block(loc, &block).unwrap();
    dev.flush().unwrap();
}
