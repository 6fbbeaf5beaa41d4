//! XML text -> events.

use super::tags::tags;
use anyhow::{bail, Context, Result};
use thin::ir::{PoolInfo, Run, Visitor};
use thin::DeviceDetails;

/// Parses a dump of either established tool and feeds it to `out`.
pub fn parse(text: &str, out: &mut dyn Visitor) -> Result<()> {
    let tags = tags(text)?;
    let mut in_superblock = false;
    let mut seen_superblock = false;
    let mut in_device = false;
    for t in &tags {
        let at = || format!("line {}", t.line);
        match (t.name.as_str(), t.closing) {
            ("superblock", false) => {
                if seen_superblock {
                    bail!("line {}: a second <superblock>", t.line);
                }
                seen_superblock = true;
                in_superblock = true;
                let pool = PoolInfo {
                    uuid: t.attrs.get("uuid").cloned().unwrap_or_default(),
                    time: u32::try_from(t.get_or("time", 0)?).context("time too large")?,
                    transaction_id: t.get_or("transaction", 0)?,
                    flags: u32::try_from(t.get_or("flags", 0)?).context("flags too large")?,
                    version: u32::try_from(t.get_or("version", 2)?).context("version too large")?,
                    data_block_size: u32::try_from(t.get("data_block_size")?)
                        .context("data_block_size too large")?,
                    nr_data_blocks: t.get("nr_data_blocks")?,
                    metadata_snap: match t.attrs.get("metadata_snap") {
                        Some(_) => Some(t.get("metadata_snap")?),
                        None => None,
                    },
                };
                out.superblock_begin(&pool).with_context(at)?;
            }
            ("superblock", true) => {
                if !in_superblock {
                    bail!("line {}: </superblock> without <superblock>", t.line);
                }
                in_superblock = false;
                out.superblock_end().with_context(at)?;
            }
            ("device", false) => {
                if !in_superblock || in_device {
                    bail!("line {}: <device> outside <superblock>", t.line);
                }
                in_device = true;
                let id = t.get("dev_id")?;
                let details = DeviceDetails {
                    mapped_blocks: t.get_or("mapped_blocks", 0)?,
                    transaction_id: t.get_or("transaction", 0)?,
                    creation_time: u32::try_from(t.get_or("creation_time", 0)?)?,
                    snapshotted_time: u32::try_from(t.get_or("snap_time", 0)?)?,
                };
                out.device_begin(id, &details)
                    .with_context(|| format!("line {}: device {id}", t.line))?;
            }
            ("device", true) => {
                if !in_device {
                    bail!("line {}: </device> without <device>", t.line);
                }
                in_device = false;
                out.device_end().with_context(at)?;
            }
            ("single_mapping", false) | ("range_mapping", false) => {
                if !in_device {
                    bail!("line {}: mapping outside <device>", t.line);
                }
                let (origin, data, len) = if t.name == "single_mapping" {
                    (t.get("origin_block")?, t.get("data_block")?, 1)
                } else {
                    (
                        t.get("origin_begin")?,
                        t.get("data_begin")?,
                        t.get("length")?,
                    )
                };
                let time = u32::try_from(t.get_or("time", 0)?)?;
                if len == 0 || origin.checked_add(len).is_none() || data.checked_add(len).is_none()
                {
                    bail!("line {}: bad mapping length {len}", t.line);
                }
                out.run(&Run {
                    origin,
                    data,
                    len,
                    time,
                })
                .with_context(at)?;
            }
            ("single_mapping", true) | ("range_mapping", true) => {}
            ("def", _) | ("ref", _) => {
                bail!(
                    "line {}: <{}> (shared sub-sequences) is not supported yet",
                    t.line,
                    t.name
                )
            }
            (other, _) => bail!("line {}: unexpected <{other}>", t.line),
        }
    }
    if !seen_superblock {
        bail!("no <superblock> in the input");
    }
    if in_superblock {
        bail!("the input ends inside <superblock>");
    }
    Ok(())
}
