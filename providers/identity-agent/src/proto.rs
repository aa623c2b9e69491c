//! The published SPIFFE Workload API (`workload.proto`, service `SpiffeWorkloadAPI`), compiled
//! at build time by `protox` and `tonic-prost-build`: messages, the server trait and a client.

#![allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::pedantic,
    reason = "generated from the published proto"
)]

include!(concat!(env!("OUT_DIR"), "/_.rs"));

/// The metadata key every Workload API request must carry with the value `true`.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";
