//! `pdt torture`: crash states and I/O errors over a workload.
//!
//! Prints progress on stderr when it is a terminal, the violations found,
//! and as its last line on stdout
//! `crash states: N, io-error points: M, violations: V`.
//! Exit status: 0 when V is 0 (with `--self-test`: when V is not 0),
//! 1 otherwise, 2 for bad usage or a workload that cannot run.

use anyhow::{bail, Context, Result};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;
use torture::Config;

const USAGE: &str =
    "usage: pdt torture [--workload btree|thin|era|cache|serve] [--seed S] [--ops N]
                    [--transactions T] [--max-states N] [--self-test]

Runs a seeded workload once, recording it, and checks every crash state a
power failure could leave (exhaustively where at most 12 block writes are in
flight, sampled above that, --max-states in all); then fails the k-th I/O,
the k-th flush, and drops every write from the k-th on, for every k.

  --workload W       thin (default): pool operations over several
                     transactions; btree: raw B-trees and the metadata space
                     map through a small cache; cache: dm-cache metadata,
                     versions 1 and 2, commits clean and unclean; era: dm-era
                     writes, checkpoints, digests, metadata snapshots, resizes;
                     serve: thin_serve's requests on a pool's data and
                     metadata devices together; the k-th write or flush of
                     either device fails (sampled evenly above 4000 points)
  --seed S           seed of the workload and of the sampling (default 1)
  --ops N            operations per transaction, on average (default 12)
  --transactions T   transactions (default 20)
  --max-states N     crash states to enumerate, about (default 50000)
  --self-test        switch the seed bug (the pre-fix commit) on: succeed only
                     if the harness finds violations (serve: commits skip the
                     data flush; data write and flush errors are ignored)
  --threads N        worker threads (default: the number of cores)";

struct Args {
    config: Config,
    self_test: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>> {
    let mut config = Config::default();
    let mut self_test = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = || -> Result<String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value")),
            }
        };
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T> {
            v.parse()
                .ok()
                .with_context(|| format!("{name}: '{v}' is not a valid number"))
        }
        match name {
            "-h" | "--help" => return Ok(None),
            "--workload" => config.workload = value()?.parse().map_err(anyhow::Error::msg)?,
            "--seed" => config.seed = num(name, value()?)?,
            "--ops" => config.ops = num(name, value()?)?,
            "--transactions" => config.transactions = num(name, value()?)?,
            "--max-states" => config.max_states = num(name, value()?)?,
            "--threads" => config.threads = num(name, value()?)?,
            "--self-test" => self_test = true,
            _ => bail!("unknown option '{a}'"),
        }
    }
    if config.ops == 0 || config.transactions == 0 {
        bail!("--ops and --transactions must be at least 1");
    }
    config.mutation = self_test;
    Ok(Some(Args { config, self_test }))
}

/// A one-line progress display on a terminal.
struct ProgressLine {
    tty: bool,
    start: Instant,
    /// Phase shown, when it was last drawn, and whether it is finished.
    last: Mutex<(String, Instant, bool)>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        let start = Instant::now();
        ProgressLine {
            tty: std::io::stderr().is_terminal(),
            start,
            last: Mutex::new((String::new(), start, false)),
        }
    }

    fn show(&self, phase: &str, done: u64, total: u64) {
        if !self.tty {
            return;
        }
        let mut last = self.last.lock().expect("progress lock");
        let now = Instant::now();
        let new_phase = last.0 != phase;
        let finished = done >= total;
        if !new_phase && (last.2 || (!finished && now.duration_since(last.1).as_millis() < 100)) {
            return;
        }
        *last = (phase.to_string(), now, finished);
        const WIDTH: u64 = 30;
        let filled = (done * WIDTH).checked_div(total).unwrap_or(WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '.' })
            .collect();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{phase:<16} [{bar}] {done}/{total}  {:.1}s",
            self.start.elapsed().as_secs_f64()
        );
        if finished {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

pub fn run(args: &[String]) -> ExitCode {
    let mut out = std::io::stdout().lock();
    ExitCode::from(torture_main(args, &mut out))
}

/// The tool, writing its report to `out`; returns the exit status.
fn torture_main(args: &[String], out: &mut dyn Write) -> u8 {
    let args = match parse(args) {
        Ok(Some(a)) => a,
        Ok(None) => {
            let _ = writeln!(out, "{USAGE}");
            return 0;
        }
        Err(e) => {
            errln!("torture: {e:#}\n\n{USAGE}");
            return 2;
        }
    };
    let c = &args.config;
    errln!(
        "torture: {:?} workload, seed {}, {} transactions of ~{} operations, up to {} crash states{}",
        c.workload,
        c.seed,
        c.transactions,
        c.ops,
        c.max_states,
        if args.self_test {
            ", seed-bug mutation ON (self-test)"
        } else {
            ""
        }
    );
    let line = ProgressLine::new();
    let report = torture::run(c, &|phase, done, total| line.show(phase, done, total));
    let _ = writeln!(
        out,
        "workload: {} steps, {} I/Os ({} writes, {} flushes) in the reference run; {:.1}s",
        report.steps,
        report.reference_ios.ios,
        report.reference_ios.writes,
        report.reference_ios.flushes,
        report.elapsed.as_secs_f64()
    );
    let cov = report.coverage;
    let inj = report.injection;
    let _ = writeln!(
        out,
        "crash states: {} enumerated over {} windows between flushes ({} exhaustively, at most {} block writes in flight), {} after injected faults",
        cov.states, cov.windows, cov.exhaustive_windows, cov.largest_window, inj.crash_states
    );
    let _ = writeln!(
        out,
        "io-error points: {} failed I/Os, {} failed flushes, {} points of dropped writes",
        inj.points_by_mode[0], inj.points_by_mode[1], inj.points_by_mode[2]
    );
    if let Some(s) = &report.serve {
        let _ = writeln!(
            out,
            "serve (metadata write, flush, data write, flush, metadata read, data read): {:?} points of {:?} reachable, {:?} violations ({} by reading back, at {:?} points)",
            s.points, s.reachable, s.violations, s.readback_violations, s.caught_by_reading
        );
    }
    if report.violations > 0 {
        let _ = writeln!(
            out,
            "violations: {} in crash states, {} at I/O-error points ({} failed I/O, {} failed flush, {} dropped writes); the first:",
            report.crash_violations,
            report.io_violations,
            inj.violations_by_mode[0],
            inj.violations_by_mode[1],
            inj.violations_by_mode[2]
        );
        for d in &report.details {
            let _ = writeln!(out, "  {d}");
        }
    }
    let ok = if args.self_test {
        if report.crash_violations > 0 && report.io_violations > 0 {
            let _ = writeln!(
                out,
                "self-test passed: with the seed bug switched on the harness found {} violations ({} in crash states, {} at I/O-error points)",
                report.violations, report.crash_violations, report.io_violations
            );
            true
        } else {
            let _ = writeln!(
                out,
                "self-test FAILED: with the seed bug switched on the harness found {} violations in crash states and {} at I/O-error points; it must find both",
                report.crash_violations, report.io_violations
            );
            false
        }
    } else {
        report.violations == 0
    };
    let _ = writeln!(
        out,
        "crash states: {}, io-error points: {}, violations: {}",
        report.crash_states, report.io_error_points, report.violations
    );
    if ok {
        0
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> (u8, String) {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut out = Vec::new();
        let code = torture_main(&args, &mut out);
        (code, String::from_utf8(out).expect("utf-8"))
    }

    fn last_line(out: &str) -> &str {
        out.lines().last().unwrap_or("")
    }

    #[test]
    fn small_run_reports_no_violations() {
        let (code, out) = run_args(&[
            "--ops",
            "3",
            "--transactions",
            "3",
            "--max-states",
            "300",
            "--seed",
            "4",
        ]);
        assert_eq!(code, 0, "{out}");
        let last = last_line(&out);
        let re = last
            .strip_prefix("crash states: ")
            .and_then(|r| r.split_once(", io-error points: "))
            .and_then(|(n, r)| Some((n, r.split_once(", violations: ")?)));
        let (n, (m, v)) = re.unwrap_or_else(|| panic!("last line: {last}"));
        assert!(n.parse::<u64>().unwrap() >= 300);
        assert!(m.parse::<u64>().unwrap() > 0);
        assert_eq!(v, "0");
    }

    #[test]
    fn self_test_finds_the_seed_bug() {
        let (code, out) = run_args(&[
            "--self-test",
            "--workload=btree",
            "--ops=3",
            "--transactions=3",
            "--max-states=300",
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("self-test passed"), "{out}");
        assert!(!last_line(&out).ends_with("violations: 0"), "{out}");
    }

    #[test]
    fn serve_self_test_finds_both_bugs() {
        let (code, out) = run_args(&[
            "--self-test",
            "--workload=serve",
            "--ops=6",
            "--transactions=10",
            "--max-states=200",
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("self-test passed"), "{out}");
    }

    #[test]
    fn usage_errors() {
        assert_eq!(run_args(&["--workload", "nope"]).0, 2);
        assert_eq!(run_args(&["--ops"]).0, 2);
        assert_eq!(run_args(&["--seed", "x"]).0, 2);
        assert_eq!(run_args(&["--frobnicate"]).0, 2);
        let (code, out) = run_args(&["--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("--max-states"));
    }
}
