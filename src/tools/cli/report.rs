//! How every checker prints what it found, as Debian's do: each step's
//! heading, then that step's problems indented under it.

use pdata::check::{Problems, Section};

/// Prints `steps` (section, heading) with the problems of each; `note`
/// may add a line under a section (e.g. counts not compared).
pub fn print_steps<S: Section>(
    steps: &[(S, &str)],
    problems: &Problems<S>,
    note: impl Fn(S) -> Option<&'static str>,
) {
    let mut err = String::new();
    for &(section, heading) in steps {
        err += heading;
        err.push('\n');
        for p in problems.problems.iter().filter(|p| p.section == section) {
            err += "  ";
            err += &p.text;
            err.push('\n');
        }
        if let Some(n) = note(section) {
            err += "  ";
            err += n;
            err.push('\n');
        }
    }
    if problems.nr_hidden() > 0 {
        err += &format!("  ... and {} more problems\n", problems.nr_hidden());
    }
    err!("{err}");
}
