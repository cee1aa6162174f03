//! Shared pieces of the example gateways.
//!
//! - [`gateway`]: the full gateway (config file, listeners, admin API, metrics), used by
//!   `examples/gateway` and its tests;
//! - [`replay`]: reading recordings back (transcripts, hash-chain verification,
//!   asciicast playback), used by `examples/replay`.

pub mod gateway;
pub mod replay;
