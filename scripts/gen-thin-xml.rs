//! Writes the thin_dump XML of a synthetic pool, fast enough for 100M
//! mappings and more (scripts/gen-thin-xml.py is the readable version of
//! the same idea; the two do not give the same pools).
//!
//! Origins get runs of new data blocks (lengths geometric around
//! --run-length, gaps between them now and then); a snapshot copies an
//! earlier device's runs and rewrites --overwrite of them with new blocks
//! at a later time. Memory: 24 bytes per run kept (each device's runs, for
//! its snapshots). Deterministic for a given --seed.
//!
//! ```sh
//! cargo run --release --example gen-thin-xml -- --mappings 100000000 > pool.xml
//! ```

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

#[derive(Clone, Copy)]
struct Run {
    origin: u64,
    data: u64,
    len: u32,
    time: u32,
}

/// The generator's random choices.
struct Rng(StdRng);

impl Rng {
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0.gen()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.0.gen_range(0..n.max(1))
    }
}

struct Opts {
    mappings: u64,
    devices: u64,
    snapshots: f64,
    overwrite: f64,
    run_length: f64,
    data_block_size: u32,
    seed: u64,
    nr_data_blocks: u64,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        mappings: 1_000_000,
        devices: 32,
        snapshots: 0.5,
        overwrite: 0.2,
        run_length: 4.0,
        data_block_size: 128,
        seed: 1,
        nr_data_blocks: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let v = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = || format!("bad value for {flag}: {v}");
        match flag.as_str() {
            "--mappings" => o.mappings = v.parse().map_err(|_| bad())?,
            "--devices" => o.devices = v.parse().map_err(|_| bad())?,
            "--snapshots" => o.snapshots = v.parse().map_err(|_| bad())?,
            "--overwrite" => o.overwrite = v.parse().map_err(|_| bad())?,
            "--run-length" => o.run_length = v.parse().map_err(|_| bad())?,
            "--data-block-size" => o.data_block_size = v.parse().map_err(|_| bad())?,
            "--seed" => o.seed = v.parse().map_err(|_| bad())?,
            "--nr-data-blocks" => o.nr_data_blocks = v.parse().map_err(|_| bad())?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if o.devices == 0 {
        return Err("--devices must be at least 1".into());
    }
    Ok(o)
}

struct Gen {
    rng: Rng,
    p_end: f64,
    next_data: u64,
}

impl Gen {
    fn run_len(&mut self, most: u64) -> u64 {
        let mut n = 1;
        while n < most && self.rng.unit() > self.p_end {
            n += 1;
        }
        n
    }

    /// `count` mappings in runs of fresh data blocks, from a random origin.
    fn origin(&mut self, count: u64, time: u32) -> Vec<Run> {
        let mut runs = Vec::new();
        let mut origin = self.rng.below(count / 2 + 1);
        let mut done = 0;
        while done < count {
            let len = self.run_len((count - done).min(u32::MAX as u64));
            runs.push(Run {
                origin,
                data: self.next_data,
                len: len as u32,
                time,
            });
            self.next_data += len;
            done += len;
            origin += len;
            if self.rng.unit() < 0.3 {
                origin += 1 + self.rng.below(64);
            }
        }
        runs
    }

    /// A copy of `from` with about `overwrite` of its runs given new data.
    fn snapshot(&mut self, from: &[Run], overwrite: f64, time: u32) -> Vec<Run> {
        let mut runs = from.to_vec();
        for r in &mut runs {
            if self.rng.unit() < overwrite {
                r.data = self.next_data;
                r.time = time;
                self.next_data += r.len as u64 + self.rng.below(8);
            }
        }
        runs
    }
}

fn write(o: &Opts, out: &mut impl Write) -> io::Result<()> {
    let mut g = Gen {
        rng: Rng(StdRng::seed_from_u64(o.seed)),
        p_end: 1.0 / o.run_length.max(1.0),
        next_data: 0,
    };
    let per_dev = (o.mappings / o.devices).max(1);
    let mut devices: Vec<(u32, u32, Vec<Run>)> = Vec::new();
    for dev in 0..o.devices {
        let time = dev as u32 + 1;
        if dev > 0 && g.rng.unit() < o.snapshots {
            let i = g.rng.below(devices.len() as u64) as usize;
            let runs = g.snapshot(&devices[i].2, o.overwrite, time);
            devices.push((time, time, runs));
        } else {
            let runs = g.origin(per_dev, time);
            devices.push((time, 0, runs));
        }
    }
    let used = g.next_data;
    let mut nr_data = used + used / 4 + 1024;
    // Spread over a larger data device: every mapping on its own.
    let stride = if o.nr_data_blocks > nr_data {
        nr_data = o.nr_data_blocks;
        o.nr_data_blocks / used.max(1)
    } else {
        1
    };
    writeln!(
        out,
        "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" flags=\"0\" version=\"2\" \
         data_block_size=\"{}\" nr_data_blocks=\"{nr_data}\">",
        o.devices, o.devices, o.data_block_size
    )?;
    for (dev, (ctime, stime, runs)) in devices.iter().enumerate() {
        let mapped: u64 = runs.iter().map(|r| r.len as u64).sum();
        writeln!(
            out,
            "  <device dev_id=\"{dev}\" mapped_blocks=\"{mapped}\" transaction=\"{dev}\" \
             creation_time=\"{ctime}\" snap_time=\"{stime}\">"
        )?;
        for r in runs {
            if r.len == 1 || stride > 1 {
                for k in 0..r.len as u64 {
                    writeln!(
                        out,
                        "    <single_mapping origin_block=\"{}\" data_block=\"{}\" time=\"{}\"/>",
                        r.origin + k,
                        (r.data + k) * stride,
                        r.time
                    )?;
                }
            } else {
                writeln!(
                    out,
                    "    <range_mapping origin_begin=\"{}\" data_begin=\"{}\" length=\"{}\" time=\"{}\"/>",
                    r.origin, r.data, r.len, r.time
                )?;
            }
        }
        writeln!(out, "  </device>")?;
    }
    writeln!(out, "</superblock>")?;
    out.flush()
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("gen-thin-xml: {e}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match write(&o, &mut out) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gen-thin-xml: {e}");
            ExitCode::FAILURE
        }
    }
}
