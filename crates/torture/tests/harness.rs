//! The harnesses on small workloads: no violations on the engine as it is,
//! and violations once the seed bug (the pre-fix commit) is switched on.
//! `pdt torture` runs the same at full size.

use torture::{run, Config, Report, WorkloadKind};

fn small(workload: WorkloadKind, mutation: bool) -> Config {
    Config {
        workload,
        seed: 7,
        ops: 8,
        transactions: 8,
        max_states: 10_000,
        mutation,
        threads: 2,
        ..Config::default()
    }
}

fn run_quiet(c: &Config) -> Report {
    run(c, &|_, _, _| {})
}

fn assert_clean(r: &Report) {
    assert_eq!(
        r.violations,
        0,
        "violations ({} crash, {} io):\n{}",
        r.crash_violations,
        r.io_violations,
        r.details.join("\n")
    );
    assert!(
        r.crash_states >= 5000,
        "only {} crash states",
        r.crash_states
    );
    assert!(
        r.io_error_points >= 50,
        "only {} io-error points",
        r.io_error_points
    );
    assert!(r.coverage.exhaustive_windows > 0);
}

#[test]
fn thin_workload_has_no_violations() {
    let r = run_quiet(&small(WorkloadKind::Thin, false));
    assert_clean(&r);
    // Every I/O of the reference run is a fault point, three ways.
    let c = r.reference_ios;
    assert_eq!(r.io_error_points, c.ios + c.flushes + c.writes);
}

#[test]
fn btree_workload_has_no_violations() {
    assert_clean(&run_quiet(&small(WorkloadKind::Btree, false)));
}

#[test]
fn thin_self_test_finds_the_seed_bug() {
    let r = run_quiet(&small(WorkloadKind::Thin, true));
    assert!(r.crash_violations > 0, "crash states missed the seed bug");
    // Failed I/O, failed flushes and dropped writes each find it.
    let v = r.injection.violations_by_mode;
    assert!(v.iter().all(|&n| n > 0), "violations by mode: {v:?}");
}

#[test]
fn btree_self_test_finds_the_seed_bug() {
    let r = run_quiet(&small(WorkloadKind::Btree, true));
    assert!(r.crash_violations > 0, "crash states missed the seed bug");
    let v = r.injection.violations_by_mode;
    assert!(v.iter().all(|&n| n > 0), "violations by mode: {v:?}");
}

#[test]
fn cache_workload_has_no_violations() {
    assert_clean(&run_quiet(&small(WorkloadKind::Cache, false)));
}

#[test]
fn cache_self_test_finds_the_seed_bug() {
    let r = run_quiet(&small(WorkloadKind::Cache, true));
    assert!(r.crash_violations > 0, "crash states missed the seed bug");
    let v = r.injection.violations_by_mode;
    assert!(v.iter().all(|&n| n > 0), "violations by mode: {v:?}");
}

#[test]
fn era_workload_has_no_violations() {
    assert_clean(&run_quiet(&small(WorkloadKind::Era, false)));
}

#[test]
fn era_self_test_finds_the_seed_bug() {
    let r = run_quiet(&small(WorkloadKind::Era, true));
    assert!(r.crash_violations > 0, "crash states missed the seed bug");
    let v = r.injection.violations_by_mode;
    assert!(v.iter().all(|&n| n > 0), "violations by mode: {v:?}");
}
