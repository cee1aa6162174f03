//! Shared pieces of the example gateways.
