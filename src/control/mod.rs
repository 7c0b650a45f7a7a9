//! The control plane: the VPC config file, building the gateway from it,
//! the namespace lab, and the control socket.

pub mod config;
