//! The Ctrl-C flag, at the bottom of the crate: every stage polls it, so it imports nothing
//! of ours (the stages would otherwise depend on the crate-wide [`crate::Error`], which names
//! them all, and sit in one import cycle with it).
//!
//! The binary calls [`install_handler`]; Ctrl-C and SIGTERM then only raise the flag. The
//! running stage notices it at its next check, returns its own `Interrupted` error, and every
//! guard (mounts, containers, build dirs) undoes itself on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler the binary installs; long-running steps poll it so that an
/// interrupt unwinds through the guards instead of killing the process mid-mount.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C was pressed (or SIGTERM arrived); each stage maps this to its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("interrupted")]
pub struct Interrupted;

/// Whether Ctrl-C was pressed.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// `Err(Interrupted)` once Ctrl-C was pressed.
pub fn check_interrupted() -> Result<(), Interrupted> {
    if interrupted() {
        Err(Interrupted)
    } else {
        Ok(())
    }
}

/// Route Ctrl-C and SIGTERM to the flag (once, from the binary's `main`). A failure to
/// install leaves the default handlers, which kill the process: nothing to report.
pub fn install_handler() {
    let _ = ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst));
}
