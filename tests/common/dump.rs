//! One parser of thin_dump's XML, for every test that reads a dump.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

/// A device as thin_dump prints it: its details and its mappings
/// (thin block -> (data block, time)).
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct DumpDev {
    pub mapped: u64,
    pub trans: u64,
    pub ctime: u32,
    pub stime: u32,
    pub map: BTreeMap<u64, (u64, u32)>,
}

/// The pool as thin_dump prints it.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Dump {
    pub time: u32,
    pub trans: u64,
    pub block_size: u32,
    /// None for a metadata snapshot (its space map roots are zeroed).
    pub nr_data: Option<u64>,
    pub devs: BTreeMap<u64, DumpDev>,
}

fn attrs(line: &str) -> Result<HashMap<String, String>, String> {
    let mut m = HashMap::new();
    let mut rest = line;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_whitespace() || c == '<')
            .next()
            .unwrap_or_default()
            .to_string();
        let after = &rest[eq + 2..];
        let end = after
            .find('"')
            .ok_or_else(|| format!("unterminated attribute in '{line}'"))?;
        m.insert(name, after[..end].to_string());
        rest = &after[end + 1..];
    }
    Ok(m)
}

fn num<T: std::str::FromStr>(
    a: &HashMap<String, String>,
    k: &str,
    line: &str,
) -> Result<T, String> {
    a.get(k)
        .ok_or_else(|| format!("no {k} in '{line}'"))?
        .parse()
        .map_err(|_| format!("bad {k} in '{line}'"))
}

/// The mappings of the device being read.
fn device_map<'a>(
    dump: &'a mut Option<Dump>,
    cur: Option<u64>,
    line: &str,
) -> Result<&'a mut BTreeMap<u64, (u64, u32)>, String> {
    let d = cur.ok_or_else(|| format!("mapping outside a device: {line}"))?;
    let dump = dump.as_mut().ok_or("no superblock before a mapping")?;
    dump.devs
        .get_mut(&d)
        .map(|dev| &mut dev.map)
        .ok_or_else(|| format!("no device {d}"))
}

/// Parses thin_dump's XML (Debian's or ours: one element a line); also
/// returns how many range_mappings it had. Anything else, a device or a
/// block twice, is an error.
pub fn parse_dump(xml: &str) -> Result<(Dump, usize), String> {
    let mut dump: Option<Dump> = None;
    let mut cur: Option<u64> = None;
    let mut ranges = 0;
    for line in xml.lines() {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        let a = attrs(t)?;
        if t.starts_with("<superblock") {
            dump = Some(Dump {
                time: num(&a, "time", t)?,
                trans: num(&a, "transaction", t)?,
                block_size: num(&a, "data_block_size", t)?,
                nr_data: Some(num(&a, "nr_data_blocks", t)?),
                devs: BTreeMap::new(),
            });
        } else if t.starts_with("<device") {
            let d: u64 = num(&a, "dev_id", t)?;
            let dev = DumpDev {
                mapped: num(&a, "mapped_blocks", t)?,
                trans: num(&a, "transaction", t)?,
                ctime: num(&a, "creation_time", t)?,
                stime: num(&a, "snap_time", t)?,
                map: BTreeMap::new(),
            };
            let dump = dump.as_mut().ok_or("no superblock before a device")?;
            if dump.devs.insert(d, dev).is_some() {
                return Err(format!("device {d} twice in the dump"));
            }
            cur = Some(d);
        } else if t.starts_with("<single_mapping") {
            let v: u64 = num(&a, "origin_block", t)?;
            let m = (num(&a, "data_block", t)?, num(&a, "time", t)?);
            if device_map(&mut dump, cur, t)?.insert(v, m).is_some() {
                return Err(format!("block {v} twice in the dump"));
            }
        } else if t.starts_with("<range_mapping") {
            ranges += 1;
            let ob: u64 = num(&a, "origin_begin", t)?;
            let db: u64 = num(&a, "data_begin", t)?;
            let len: u64 = num(&a, "length", t)?;
            let time: u32 = num(&a, "time", t)?;
            let map = device_map(&mut dump, cur, t)?;
            for i in 0..len {
                if map.insert(ob + i, (db + i, time)).is_some() {
                    return Err(format!("block {} twice in the dump", ob + i));
                }
            }
        } else if t == "</device>" {
            cur = None;
        } else if t != "</superblock>" {
            return Err(format!("unexpected thin_dump line: {t}"));
        }
    }
    let dump = dump.ok_or_else(|| format!("no superblock in thin_dump output:\n{xml}"))?;
    Ok((dump, ranges))
}

/// A readable account of how two dumps differ (the first few differences).
pub fn diff(what: &str, got: &Dump, want: &Dump) -> Option<String> {
    if got == want {
        return None;
    }
    let mut s = format!("{what}: thin_dump differs from the model\n");
    if (got.time, got.trans, got.block_size, got.nr_data)
        != (want.time, want.trans, want.block_size, want.nr_data)
    {
        let _ = writeln!(
            s,
            "  superblock: got time {} transaction {} block size {} nr_data {:?}; want {} {} {} {:?}",
            got.time, got.trans, got.block_size, got.nr_data, want.time, want.trans,
            want.block_size, want.nr_data
        );
    }
    let ids: BTreeSet<u64> = got.devs.keys().chain(want.devs.keys()).copied().collect();
    let mut n = 0;
    for id in ids {
        match (got.devs.get(&id), want.devs.get(&id)) {
            (Some(_), None) => {
                let _ = writeln!(s, "  device {id}: in the dump, not in the model");
            }
            (None, Some(_)) => {
                let _ = writeln!(s, "  device {id}: in the model, not in the dump");
            }
            (Some(g), Some(w)) if g != w => {
                if (g.mapped, g.trans, g.ctime, g.stime) != (w.mapped, w.trans, w.ctime, w.stime) {
                    let _ = writeln!(
                        s,
                        "  device {id}: got mapped {} trans {} ctime {} stime {}; want {} {} {} {}",
                        g.mapped, g.trans, g.ctime, g.stime, w.mapped, w.trans, w.ctime, w.stime
                    );
                }
                let vs: BTreeSet<u64> = g.map.keys().chain(w.map.keys()).copied().collect();
                for v in vs {
                    if g.map.get(&v) != w.map.get(&v) {
                        n += 1;
                        if n <= 20 {
                            let _ = writeln!(
                                s,
                                "  device {id} block {v}: got {:?}, want {:?}",
                                g.map.get(&v),
                                w.map.get(&v)
                            );
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if n > 20 {
        let _ = writeln!(s, "  ... {n} mapping differences in all");
    }
    Some(s)
}
