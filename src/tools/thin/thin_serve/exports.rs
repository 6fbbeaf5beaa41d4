//! Which thin devices are exported, and at what size: dm-thin keeps no
//! volume size in its metadata (the size is in the device-mapper table), so
//! it comes from `--size` (per device, or a default for all), else the
//! pool's data size.

use std::collections::BTreeMap;
use std::sync::Arc;
use thin::pool::{OpenDevice, Pool};

pub struct Exports {
    pub pool: Arc<Pool>,
    /// Only these devices, when `--dev-id` was given.
    pub only: Option<Vec<u64>>,
    pub sizes: BTreeMap<u64, u64>,
    pub default_size: u64,
    pub read_only: bool,
}

/// An export a client chose: its device held open, its size.
pub struct Export {
    pub dev: OpenDevice,
    pub size: u64,
}

impl Exports {
    /// The export names a client may list: the ids of the devices served.
    pub fn names(&self) -> Vec<String> {
        let devs = self.pool.devices().unwrap_or_default();
        devs.into_iter()
            .filter(|d| self.only.as_ref().is_none_or(|o| o.contains(d)))
            .map(|d| d.to_string())
            .collect()
    }

    /// Opens the export `name` (a device id; "" is the first listed).
    pub fn open(&self, name: &str) -> Option<Export> {
        let id: u64 = if name.is_empty() {
            self.names().first()?.parse().ok()?
        } else {
            // Only canonical decimal names, so one device has one name.
            let id: u64 = name.parse().ok()?;
            if id.to_string() != name {
                return None;
            }
            id
        };
        if self.only.as_ref().is_some_and(|o| !o.contains(&id)) {
            return None;
        }
        let dev = self.pool.open_device(id).ok()?;
        let size = self.sizes.get(&id).copied().unwrap_or(self.default_size);
        Some(Export { dev, size })
    }
}
