//! `pdt demo`: a short tour on a pool in a temporary file — thin devices,
//! a snapshot, provisioning, a commit, an abort, and what a check finds.

use anyhow::{Context, Result};
use pdata::io::{BlockDevice, FileDevice};
use std::process::ExitCode;
use std::sync::Arc;
use thin::check::check;
use thin::ThinMetadata;

pub fn run(_args: &[String]) -> ExitCode {
    match demo() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            errln!("demo: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn show_check(dev: &Arc<dyn BlockDevice>) -> Result<bool> {
    let r = check(dev.clone())?;
    outln!(
        "  check: {} devices, {} mappings, {} metadata blocks and {} data blocks in use; {} errors, {} leaks",
        r.devices.len(),
        r.nr_mappings,
        r.metadata_blocks_in_use,
        r.data_blocks_in_use,
        r.errors.len(),
        r.leaks.len()
    )?;
    for e in r.errors.iter().chain(&r.leaks).take(10) {
        outln!("    {e}")?;
    }
    Ok(r.is_clean())
}

fn demo() -> Result<bool> {
    let dir = tempfile::tempdir().context("creating a temporary directory")?;
    let path = dir.path().join("pool-metadata");
    let dev: Arc<dyn BlockDevice> = Arc::new(FileDevice::create(&path, 4096)?);
    outln!(
        "metadata: {} (16 MiB), data: 65536 blocks of 64 KiB",
        path.display()
    )?;

    let mut md = ThinMetadata::format(dev.clone(), 128, 65536, false)?;
    outln!("format: ok")?;
    md.create_thin(1)?;
    md.create_thin(2)?;
    for v in 0..1000 {
        md.provision(1, v)?;
    }
    for v in 0..300 {
        md.provision(2, v * 7)?;
    }
    md.set_transaction_id(0, 1)?;
    md.commit()?;
    outln!("transaction 1: thins 1 (1000 blocks) and 2 (300 blocks) committed")?;
    let mut clean = show_check(&dev)?;

    md.create_snap(3, 1)?;
    let shared = md.lookup(3, 10)?;
    let new = md.provision(1, 10)?;
    outln!(
        "snapshot 3 of 1; a write to block 10 of 1 breaks the sharing: snapshot keeps {:?}, origin now maps data block {new}",
        shared.map(|(b, _)| b)
    )?;
    md.remove_range(2, 0, 700)?;
    md.set_transaction_id(1, 2)?;
    md.commit()?;
    outln!(
        "transaction 2 committed: time {}, {} of {} data blocks free",
        md.time(),
        md.nr_free_data_blocks(),
        md.nr_data_blocks()
    )?;
    clean &= show_check(&dev)?;

    md.delete(1)?;
    for v in 0..500 {
        md.provision(3, 5000 + v)?;
    }
    outln!("uncommitted: delete thin 1, provision 500 blocks on 3; then abort")?;
    md.abort()?;
    outln!(
        "after abort: devices {:?}, transaction id {}, thin 1 maps {} blocks",
        md.devices()?,
        md.transaction_id(),
        md.device_details(1)?.mapped_blocks
    )?;
    clean &= show_check(&dev)?;
    outln!(
        "{}",
        if clean {
            "metadata is clean"
        } else {
            "metadata has problems"
        }
    )?;
    Ok(clean)
}
