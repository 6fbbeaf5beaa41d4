//! Crash-state enumeration and I/O-error injection.
