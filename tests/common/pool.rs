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

/// Blocks per data space map bitmap.
pub const CHUNK: u64 = 16320;
/// The data device of [`spread_pool_devices`]: 24 bitmaps.
pub const SPREAD_NR_DATA: u64 = 24 * CHUNK;

/// Devices over the whole of a data device of [`SPREAD_NR_DATA`] blocks,
/// as `(id, [(data_begin, length)])`: device 0 maps runs of 500 blocks
/// with gaps of 300 (dense chunks); device 1 maps every other run of them
/// again (counts of 2), device 2 every fourth (counts of 3: overflow
/// entries); device 3 a few scattered blocks in the gaps (sparse chunks).
pub fn spread_pool_devices() -> Vec<(u64, Vec<(u64, u64)>)> {
    let runs: Vec<u64> = (0..SPREAD_NR_DATA / 800).map(|k| k * 800).collect();
    vec![
        (0, runs.iter().map(|&b| (b, 500)).collect()),
        (1, runs.iter().step_by(2).map(|&b| (b, 500)).collect()),
        (2, runs.iter().step_by(4).map(|&b| (b, 500)).collect()),
        (
            3,
            (0..SPREAD_NR_DATA / 7919)
                .map(|k| (k * 7919 + 600, 1))
                .collect(),
        ),
    ]
}

/// Runs of 40 blocks in the gaps of every third run of
/// [`spread_pool_devices`]' device 0, highest first: a device's leaves
/// then refer to blocks far apart, and its first leaves to the last
/// windows.
pub fn far_apart_runs() -> Vec<(u64, u64)> {
    let runs = (0..SPREAD_NR_DATA / 800).map(|k| k * 800);
    runs.rev().step_by(3).map(|b| (b + 500, 40)).collect()
}

/// The thin_dump XML of a pool of `nr_data` blocks of 64 KiB whose devices
/// map the runs given, each device's one after another in its thin blocks
/// with gaps of 3.
pub fn runs_xml(nr_data: u64, devices: &[(u64, Vec<(u64, u64)>)]) -> String {
    use std::fmt::Write as _;
    let mut x = format!(
        "<superblock uuid=\"\" time=\"1\" transaction=\"1\" flags=\"0\" version=\"2\" \
         data_block_size=\"128\" nr_data_blocks=\"{nr_data}\">\n"
    );
    for (dev, runs) in devices {
        let mapped: u64 = runs.iter().map(|r| r.1).sum();
        writeln!(
            x,
            "<device dev_id=\"{dev}\" mapped_blocks=\"{mapped}\" transaction=\"0\" \
             creation_time=\"0\" snap_time=\"0\">"
        )
        .unwrap();
        let mut origin = 0;
        for (data, len) in runs {
            writeln!(
                x,
                "<range_mapping origin_begin=\"{origin}\" data_begin=\"{data}\" length=\"{len}\" time=\"0\"/>"
            )
            .unwrap();
            origin += len + 3;
        }
        x.push_str("</device>\n");
    }
    x.push_str("</superblock>\n");
    x
}
