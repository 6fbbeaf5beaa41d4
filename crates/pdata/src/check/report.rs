//! What a check found: problems by section and severity. The sections are
//! the client's (the headings its tool prints problems under).

/// A part of the metadata a client's problems are reported under.
pub trait Section: Copy + Eq {
    /// A small number, distinct for each section (for per-section tallies).
    fn index(self) -> usize;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Damage: anything but a leak.
    Fatal,
    /// A block counted 1 in a space map but referenced by nothing.
    Leak,
}

#[derive(Debug, Clone)]
pub struct Problem<S> {
    pub section: S,
    pub severity: Severity,
    pub text: String,
}

/// Messages kept per severity; the rest are only counted.
const MAX_FATAL_SHOWN: usize = 100;
const MAX_LEAKS_SHOWN: usize = 20;

/// The problems a check found.
#[derive(Debug, Clone)]
pub struct Problems<S> {
    /// The problems found, in the order found (the first
    /// `MAX_*_SHOWN` of each severity; leaks are also summed up per map).
    pub problems: Vec<Problem<S>>,
    /// All fatal problems, shown or not.
    pub nr_fatal: u64,
    /// Fatal problems by section index, shown or not.
    fatal_by_section: Vec<u64>,
    /// All leaked blocks, shown or not.
    pub nr_leaks: u64,
    /// Texts of the fatal problems kept.
    pub errors: Vec<String>,
    /// Texts of the leak problems kept.
    pub leaks: Vec<String>,
}

impl<S> Default for Problems<S> {
    fn default() -> Self {
        Problems {
            problems: Vec::new(),
            nr_fatal: 0,
            fatal_by_section: Vec::new(),
            nr_leaks: 0,
            errors: Vec::new(),
            leaks: Vec::new(),
        }
    }
}

impl<S: Section> Problems<S> {
    /// No problem at all.
    pub fn is_clean(&self) -> bool {
        self.nr_fatal == 0 && self.nr_leaks == 0
    }

    /// Nothing but leaks (or nothing).
    pub fn is_sound(&self) -> bool {
        self.nr_fatal == 0
    }

    /// Fatal problems in `section`, shown or not.
    pub fn nr_fatal_in(&self, section: S) -> u64 {
        self.fatal_by_section
            .get(section.index())
            .copied()
            .unwrap_or(0)
    }

    pub fn fatal(&mut self, section: S, text: impl Into<String>) {
        self.nr_fatal += 1;
        let i = section.index();
        if self.fatal_by_section.len() <= i {
            self.fatal_by_section.resize(i + 1, 0);
        }
        self.fatal_by_section[i] += 1;
        if self.errors.len() < MAX_FATAL_SHOWN {
            let text = text.into();
            self.errors.push(text.clone());
            self.problems.push(Problem {
                section,
                severity: Severity::Fatal,
                text,
            });
        }
    }

    /// One leaked block; `text` is only built while leaks are still shown.
    pub fn leak(&mut self, section: S, text: impl FnOnce() -> String) {
        self.nr_leaks += 1;
        if self.leaks.len() < MAX_LEAKS_SHOWN {
            self.push_leak_text(section, text());
        }
    }

    /// A leak summary line (not counted again).
    pub fn push_leak_text(&mut self, section: S, text: String) {
        self.leaks.push(text.clone());
        self.problems.push(Problem {
            section,
            severity: Severity::Leak,
            text,
        });
    }

    /// Fatal problems not kept (beyond the shown ones).
    pub fn nr_hidden(&self) -> u64 {
        self.nr_fatal.saturating_sub(self.errors.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct One(usize);
    impl Section for One {
        fn index(self) -> usize {
            self.0
        }
    }

    #[test]
    fn limits_and_tallies() {
        let mut p = Problems::default();
        for i in 0..150 {
            p.fatal(One(i % 2), format!("f{i}"));
        }
        for i in 0..30 {
            p.leak(One(3), || format!("l{i}"));
        }
        assert_eq!((p.nr_fatal, p.errors.len(), p.nr_hidden()), (150, 100, 50));
        assert_eq!((p.nr_fatal_in(One(1)), p.nr_fatal_in(One(7))), (75, 0));
        assert_eq!((p.nr_leaks, p.leaks.len()), (30, 20));
        assert!(!p.is_sound() && !p.is_clean());
    }
}
