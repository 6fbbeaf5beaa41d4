//! A progress bar on standard error for long runs: drawn only when standard
//! error is a terminal and the tool is not quiet, by a thread of its own, so
//! that the work only bumps an atomic counter.

use pdata::progress::ProgressHook;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Redraw interval; also the delay before the bar first appears, so that
/// short runs print nothing.
const TICK: Duration = Duration::from_millis(250);
const WIDTH: u64 = 40;

struct Shared {
    done: AtomicU64,
    total: AtomicU64,
    stop: AtomicBool,
}

pub struct Progress {
    shared: Arc<Shared>,
    drawer: Option<JoinHandle<()>>,
}

impl Progress {
    /// A bar labelled `label` out of `total` units; a no-op when `quiet` or
    /// when standard error is not a terminal.
    pub fn new(label: &'static str, total: u64, quiet: bool) -> Self {
        let shared = Arc::new(Shared {
            done: AtomicU64::new(0),
            total: AtomicU64::new(total),
            stop: AtomicBool::new(false),
        });
        // SAFETY: isatty only inspects the descriptor.
        let tty = unsafe { libc::isatty(2) } == 1;
        let drawer = (tty && !quiet).then(|| {
            let s = shared.clone();
            std::thread::spawn(move || draw_until_stopped(label, &s))
        });
        Progress { shared, drawer }
    }

    #[inline]
    pub fn add(&self, n: u64) {
        self.shared.done.fetch_add(n, Ordering::Relaxed);
    }

    /// For a total known only once the work started.
    pub fn set_total(&self, total: u64) {
        self.shared.total.store(total, Ordering::Relaxed);
    }
}

impl ProgressHook for Progress {
    fn set_total(&self, total: u64) {
        Progress::set_total(self, total);
    }
    fn add(&self, n: u64) {
        Progress::add(self, n);
    }
}

/// A reader that counts the bytes it gives.
pub struct CountingReader<'a, R> {
    pub inner: R,
    pub progress: &'a Progress,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.add(n as u64);
        Ok(n)
    }
}

fn draw_until_stopped(label: &str, s: &Shared) {
    let mut drawn = false;
    loop {
        std::thread::park_timeout(TICK);
        if s.stop.load(Ordering::Acquire) {
            break;
        }
        let total = s.total.load(Ordering::Relaxed).max(1);
        let done = s.done.load(Ordering::Relaxed).min(total);
        let filled = done * WIDTH / total;
        let bar: String = (0..WIDTH)
            .map(|i| if i < filled { '#' } else { '-' })
            .collect();
        err!("\r{label} [{bar}] {:>3}%", done * 100 / total);
        let _ = std::io::stderr().flush();
        drawn = true;
    }
    if drawn {
        // Leave the line clean for whatever the tool prints next.
        err!(
            "\r{:width$}\r",
            "",
            width = label.len() + WIDTH as usize + 8
        );
        let _ = std::io::stderr().flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(h) = self.drawer.take() {
            h.thread().unpark();
            let _ = h.join();
        }
    }
}
