//! Minimal leveled logging to stderr. certbot captures hook stderr into its own log, so every line
//! is prefixed with `certherd:` to be findable there.

use std::sync::atomic::{AtomicI8, Ordering};

static LEVEL: AtomicI8 = AtomicI8::new(0);

/// Sets verbosity: -1 quiet (errors only), 0 normal, 1 verbose, 2 debug.
pub fn set_level(level: i8) {
    LEVEL.store(level, Ordering::Relaxed);
}

/// Whether messages of `level` are printed.
pub fn enabled(level: i8) -> bool {
    LEVEL.load(Ordering::Relaxed) >= level
}

/// Prints an error line (always shown).
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { eprintln!("certherd: error: {}", format_args!($($arg)*)) };
}

/// Prints a warning line (hidden by `-q`).
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { if $crate::log::enabled(0) { eprintln!("certherd: warning: {}", format_args!($($arg)*)) } };
}

/// Prints an informational line (hidden by `-q`).
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { if $crate::log::enabled(0) { eprintln!("certherd: {}", format_args!($($arg)*)) } };
}

/// Prints a line only with `-v`.
#[macro_export]
macro_rules! verbose {
    ($($arg:tt)*) => { if $crate::log::enabled(1) { eprintln!("certherd: {}", format_args!($($arg)*)) } };
}
