//! The control plane: the VPC config file, building the gateway from it,
//! the namespace lab, and the control socket.

pub mod capture;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod flow_writer;
pub mod flows;
pub mod kernel_lab;
pub mod lab;
pub mod lab_services;
pub mod metrics;
pub mod render;
pub mod scenario;
pub mod socket;
pub mod steering;
pub mod trace;
pub mod views;
pub mod web;
