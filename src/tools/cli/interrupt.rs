//! Ctrl-C, SIGTERM and SIGHUP turned into a flag, for tools that must undo
//! something before they exit (thin_migrate releases the metadata snapshot
//! it holds on a live pool): their loops check [`interrupted`] and return
//! an error, so that the undoing runs as on any other error.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Only an atomic store: async-signal-safe.
    INTERRUPTED.store(true, Ordering::Relaxed);
}

/// From now on the signals set the flag instead of ending the process.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether one of the signals came.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}
