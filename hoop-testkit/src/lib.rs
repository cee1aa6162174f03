//! Test fixtures for hoop: generated certificates, free ports, and starters for real
//! servers on loopback.
//!
//! This crate is for tests only (`publish = false`): its helpers panic with a clear message
//! when the environment is broken, which is the right behaviour in a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod bodies;
pub mod certs;
pub mod jwt;
pub mod nginx;
pub mod ports;
pub mod postgres;
pub mod wait;

pub use certs::{TestCa, TestCert};
pub use ports::free_port;
