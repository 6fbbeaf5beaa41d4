//! `pdt cache_metadata_size` gives Debian's figures, messages and exit
//! codes on every input Debian's 0.9.0 takes (except where it crashes), and
//! the 1.x tool's units (`-u`, `-n`) on top.

mod common;
use common::oracle::{debian_cmd, run};
use common::rng::XorShift;
use common::tool::pdt;
use std::process::Output;

fn both(args: &[String]) -> (Output, Output) {
    (
        run(debian_cmd("cache_metadata_size").args(args)),
        run(pdt("cache_metadata_size").args(args)),
    )
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

#[test]
fn figures_and_messages_match_debian() {
    let mut cases: Vec<Vec<String>> = [
        "--nr-blocks 1000",
        "--nr-blocks 0",
        "--nr-blocks 1",
        "--nr-blocks 20",
        "--nr-blocks 5000000",
        "--nr-blocks 18446744073709551615",
        "--nr-blocks -1",
        "--nr-blocks +5",
        "--nr-blocks=12",
        "--nr 12",
        "--nr-blocks 12 --nr-blocks 13",
        "--nr-blocks 1000 extra",
        "--block-size 64 --device-size 1000000",
        "--block-size 128 --device-size 1000000",
        "--block-size 64 --device-size 10",
        "--block-size 63 --device-size 100000",
        "--block-size 64 --device-size 18446744073709551615",
        "--block-size 64 --device-size 1000000 --max-hint-width 0",
        "--nr-blocks 1000 --block-size 64 --device-size 64000",
        "--nr-blocks 1000 --block-size 64 --device-size 64063",
        "--nr-blocks 5 --block-size 64 --device-size 64000",
        "--nr-blocks 1000 --max-hint-width 8",
        "--nr-blocks 1000 --max-hint-width 129",
        "--nr-blocks 1000 --max-hint-width 4294967295",
        "--nr-blocks 1000 --max-hint-width -1",
        "--nr-blocks 1000 --max-hint-width 4294967296",
        "--nr-blocks 1000 --max-hint-width abc",
        "--nr-blocks 1000 --max-hint-width=",
        "--nr-blocks abc",
        "--nr-blocks=",
        "--nr-blocks 0x10",
        "--nr-blocks 18446744073709551616",
        "--block-size 64",
        "--device-size 100",
        "",
    ]
    .iter()
    .map(|c| words(c))
    .collect();
    let mut rng = XorShift(9);
    for _ in 0..60 {
        let mut c = vec![];
        if rng.below(2) == 0 {
            let bits = rng.below(40);
            c.push(format!("--nr-blocks={}", rng.below(1 << bits)));
        } else {
            let bs = 64 << rng.below(8);
            c.push(format!("--block-size={bs}"));
            let bits = rng.below(50);
            c.push(format!("--device-size={}", rng.below(1 << bits)));
        }
        if rng.below(2) == 0 {
            c.push(format!("--max-hint-width={}", rng.below(300)));
        }
        cases.push(c);
    }
    for c in &cases {
        let (theirs, ours) = both(c);
        assert_eq!(ours.status.code(), theirs.status.code(), "{c:?}");
        assert_eq!(
            String::from_utf8_lossy(&ours.stdout),
            String::from_utf8_lossy(&theirs.stdout),
            "{c:?}"
        );
        assert_eq!(
            String::from_utf8_lossy(&ours.stderr),
            String::from_utf8_lossy(&theirs.stderr),
            "{c:?}"
        );
    }
}

#[test]
fn bad_options_and_help_as_debian() {
    for c in ["-x", "--frob", "--nr-blocks", "--nr-blocks 1000 --max"] {
        let (theirs, ours) = both(&words(c));
        assert_eq!(ours.status.code(), theirs.status.code(), "{c}");
        // (Debian names itself by its whole path.)
        let first = |o: &Output| {
            let e = String::from_utf8_lossy(&o.stderr).into_owned();
            let l = e.lines().next().unwrap_or_default();
            l.split_once(": ").map_or(l, |(_, m)| m).to_string()
        };
        assert_eq!(first(&ours), first(&theirs), "{c}");
        let last = |o: &Output| {
            let e = String::from_utf8_lossy(&o.stderr).into_owned();
            e.lines().last().unwrap_or_default().to_string()
        };
        assert_eq!(last(&ours), last(&theirs), "{c}");
    }
    for v in ["-V", "--version"] {
        let o = run(pdt("cache_metadata_size").arg(v));
        assert_eq!(o.status.code(), Some(0));
        assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
    }
    let (theirs, ours) = both(&words("--help"));
    assert_eq!(ours.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&ours.stdout).starts_with(
        String::from_utf8_lossy(&theirs.stdout)
            .lines()
            .next()
            .unwrap()
    ));
}

#[test]
fn units_as_the_1x_tool() {
    let ours = |c: &str| {
        let o = run(pdt("cache_metadata_size").args(words(c)));
        assert!(o.status.success(), "{c}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(ours("--nr-blocks 1000 -u k"), "4123.34 kibibytes\n");
    assert_eq!(ours("--nr-blocks 1000 -n"), "8246.69\n");
    assert_eq!(
        ours("--nr-blocks 1000 -u M --numeric-only=long"),
        "4.22megabytes\n"
    );
    assert_eq!(ours("--nr-blocks 1000 -u b -nshort"), "4222304b\n");
    assert_eq!(ours("--nr-blocks 0 -n"), "8192\n");
    assert_eq!(ours("--block-size 64k --device-size 1g"), "9088 sectors\n");
    for bad in [
        "-u x",
        "-nfoo",
        "--block-size 0 --device-size 10",
        "--block-size 1q --device-size 1",
    ] {
        let o = run(pdt("cache_metadata_size").args(words(&format!("--nr-blocks 1 {bad}"))));
        assert_eq!(o.status.code(), Some(1), "{bad}");
        assert!(!o.stderr.is_empty());
    }
}
