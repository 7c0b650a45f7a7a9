//! I/O: TUN devices and network namespaces. Every syscall of the dataplane
//! and every `unsafe` block of the crate lives here, each with a `// SAFETY:`
//! comment.
#![allow(unsafe_code)]

pub mod netns;
pub mod tun;

pub use tun::{OffloadLevel, Read, TunOptions, TunQueue};
