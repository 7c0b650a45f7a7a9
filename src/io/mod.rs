//! I/O: TUN devices and network namespaces. Every syscall of the dataplane
//! and every `unsafe` block of the crate lives here, each with a `// SAFETY:`
//! comment.
#![allow(unsafe_code)]

pub mod netns;
pub mod steer;
pub mod tun;

/// Restores the default action of SIGPIPE, which the Rust runtime ignores:
/// `natgw routes | head` then ends quietly instead of failing to print.
pub fn default_sigpipe() {
    // SAFETY: setting the disposition of SIGPIPE to SIG_DFL installs no Rust
    // handler, so nothing can run in signal context; called once at start-up,
    // before any thread is spawned.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub use tun::{OffloadLevel, Read, TunOptions, TunQueue};
