//! A live thin volume's pool, through device-mapper (`thin_migrate
//! --source-dev`): which pool and device id the volume is (its table), the
//! pool's metadata device (the pool's table), and a metadata snapshot held
//! for as long as the copy runs, released when dropped, also on error.
//! The tables are asked of `dmsetup`, which prints devices as
//! `major:minor`; sysfs turns those into names and device nodes.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A live thin volume.
pub struct LiveThin {
    /// The pool's device-mapper name.
    pub pool: String,
    pub dev_id: u64,
    /// The pool's metadata device.
    pub metadata: PathBuf,
    /// Unmapped blocks read from an external origin, not as zeros.
    pub external_origin: bool,
}

/// Runs `dmsetup ARGS`; its standard output.
fn dmsetup(args: &[&str]) -> Result<String> {
    let o = Command::new("dmsetup")
        .args(args)
        .output()
        .context("cannot run dmsetup (is it installed?)")?;
    if !o.status.success() {
        bail!(
            "dmsetup {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

/// The device-mapper name of block device `major:minor`, if it is one.
fn dm_name(dev: &str) -> Option<String> {
    let name = std::fs::read_to_string(format!("/sys/dev/block/{dev}/dm/name")).ok()?;
    Some(name.trim().to_string())
}

/// The one line of a single-target table, split; its target type checked.
fn table(name: &str, target: &str) -> Result<Vec<String>> {
    let text = dmsetup(&["table", name])?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let fields: Vec<String> = match lines.as_slice() {
        [line] => line.split_whitespace().map(str::to_string).collect(),
        _ => bail!(
            "{name} has {} table lines, not one {target} target",
            lines.len()
        ),
    };
    if fields.get(2).map(String::as_str) != Some(target) || fields.len() < 5 {
        bail!("{name} is not a {target} device (its table: {})", lines[0]);
    }
    Ok(fields)
}

/// A node for block device `major:minor`: /dev/block/M:m, or /dev/NAME as
/// the kernel names it (systems without udev have no /dev/block).
fn node_of(dev: &str) -> Result<PathBuf> {
    let same = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| {
            m.file_type().is_block_device()
                && format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev())) == dev
        })
    };
    let by_number = PathBuf::from(format!("/dev/block/{dev}"));
    if same(&by_number) {
        return Ok(by_number);
    }
    let uevent =
        std::fs::read_to_string(format!("/sys/dev/block/{dev}/uevent")).unwrap_or_default();
    if let Some(name) = uevent.lines().find_map(|l| l.strip_prefix("DEVNAME=")) {
        let p = Path::new("/dev").join(name);
        if same(&p) {
            return Ok(p);
        }
    }
    bail!(
        "no device node found for block device {dev} (neither /dev/block/{dev} nor its /dev name)"
    )
}

/// The pool, device id and metadata device of the thin volume `source`.
pub fn find(source: &Path) -> Result<LiveThin> {
    let m =
        std::fs::metadata(source).with_context(|| format!("cannot open {}", source.display()))?;
    if !m.file_type().is_block_device() {
        bail!(
            "--source-dev {} is not a block device (a live thin volume); for pool images give --metadata-dev, --data-dev and --dev-id",
            source.display()
        );
    }
    let dev = format!("{}:{}", libc::major(m.rdev()), libc::minor(m.rdev()));
    let name = dm_name(&dev).with_context(|| {
        format!(
            "{} is not a device-mapper device (a thin volume)",
            source.display()
        )
    })?;
    // start length thin POOL DEV_ID [EXTERNAL_ORIGIN]
    let thin = table(&name, "thin")?;
    let dev_id: u64 = thin[4]
        .parse()
        .with_context(|| format!("{name}: bad device id '{}' in its table", thin[4]))?;
    let pool = dm_name(&thin[3])
        .with_context(|| format!("the pool of {name} ({}) is not found", thin[3]))?;
    // start length thin-pool METADATA DATA BLOCK_SIZE LOW_WATER ...
    let pool_table = table(&pool, "thin-pool")?;
    Ok(LiveThin {
        metadata: node_of(&pool_table[3])?,
        pool,
        dev_id,
        external_origin: thin.len() > 5,
    })
}

/// A metadata snapshot of a live pool, released when dropped.
pub struct HeldSnapshot {
    pool: String,
}

impl HeldSnapshot {
    /// Reserves the snapshot (the pool commits with it, so the metadata
    /// device then holds it).
    pub fn reserve(pool: &str) -> Result<HeldSnapshot> {
        dmsetup(&["message", pool, "0", "reserve_metadata_snap"]).with_context(|| {
            format!("cannot reserve a metadata snapshot of pool {pool} (one held already? `dmsetup message {pool} 0 release_metadata_snap` releases it)")
        })?;
        Ok(HeldSnapshot {
            pool: pool.to_string(),
        })
    }
}

impl Drop for HeldSnapshot {
    fn drop(&mut self) {
        if let Err(e) = dmsetup(&["message", &self.pool, "0", "release_metadata_snap"]) {
            errln!(
                "thin_migrate: warning: could not release the metadata snapshot of pool {}: {e:#}",
                self.pool
            );
        }
    }
}
