//! Named crash points for the kill tests (Guarantee 6): `crashpoint!("after-link-cert")` marks a
//! place in the install, rollback or deploy path where a test build can stop the process dead.
//!
//! Why our own few lines and not a failpoint crate: the only action we need is "die here, as if
//! SIGKILLed", chosen by one environment variable, and the release binary must contain none of
//! it. Without the cargo feature `crashpoints` the macro expands to nothing (the point's name is
//! not even compiled in: `strings target/release/certherd | grep -c CERTHERD_CRASHPOINT` is 0).
//! With it, a process whose `CERTHERD_CRASHPOINT` names the point appends the name and a newline
//! to the file `CERTHERD_CRASHPOINT_HIT` names (so the test knows where it stopped, not just
//! that it stopped), then sends itself SIGKILL: no destructor, no flush, no unwinding runs,
//! exactly what a kill -9 or a power cut at that line leaves behind.
//!
//! The agent gets the variables through its forced command in the test bed
//! (`CERTHERD_CRASHPOINT=… certherd agent …`), the primary through its own environment.

/// Marks a crash point; `crashpoint!("after-archive-{kind}")` takes `format!` arguments.
/// Expands to nothing unless the crate is built with the `crashpoints` feature.
#[macro_export]
macro_rules! crashpoint {
    ($($name:tt)+) => {
        #[cfg(feature = "crashpoints")]
        $crate::crashpoint::hit(format_args!($($name)+));
    };
}

/// Stops the process dead when `CERTHERD_CRASHPOINT` equals `name` (see the module docs).
#[cfg(feature = "crashpoints")]
pub fn hit(name: std::fmt::Arguments<'_>) {
    let Ok(wanted) = std::env::var("CERTHERD_CRASHPOINT") else {
        return;
    };
    let name = name.to_string();
    if wanted != name {
        return;
    }
    if let Some(path) = std::env::var_os("CERTHERD_CRASHPOINT_HIT") {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| {
                f.write_all(format!("{name}\n").as_bytes())?;
                f.sync_all()
            });
        if written.is_err() {
            // A test that cannot learn where the process stopped must not pass: abort loudly.
            std::process::abort();
        }
    }
    let _ = nix::sys::signal::kill(nix::unistd::getpid(), nix::sys::signal::Signal::SIGKILL);
    // SIGKILL cannot be caught; should it not be delivered at once, never run on.
    std::process::abort();
}
