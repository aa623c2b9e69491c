//! Test doubles with real cryptography, for the framework's tests and for services' own.
//!
//! - [`TestCa`] mints a real CA and real X.509-SVIDs (rcgen, ECDSA P-256), including the broken
//!   ones a verifier must refuse: expired, from another trust domain, with two URI SANs or none.
//! - [`FakeIdentity`] serves those SVIDs through the [`WorkloadIdentity`](crate::WorkloadIdentity)
//!   contract and rotates them on demand.
//! - [`AllowList`] and [`PolicyFn`] are policies; [`RecordingTelemetry`] keeps every event;
//!   [`ScriptedLimiter`] answers as scripted.
//! - [`PeerClient`] is an mTLS HTTP client holding its own SVID, to call a served service over
//!   loopback as another workload would; [`PeerClient::chain_header`] and [`signed_chain`]
//!   sign identity chains as the hops of a real call path would.
//! - [`RedisServer`] runs a real `redis-server` on a free loopback port, for the providers
//!   that keep state in Redis or Valkey.
//! - [`ResilienceStack`] runs the outbound resilience stages without the network, for
//!   benchmarks.
//! - [`TxnIssuer`] signs Transaction Tokens with a key generated at run time.
//!
//! These are fakes for tests. Nothing here belongs in production configuration.

mod ca;
mod chain;
mod client;
pub mod conformance;
mod identity;
mod limiter;
mod policy;
mod redis;
mod resilience;
mod telemetry;
mod txn;
mod wimse;

pub use self::ca::{SvidKey, SvidSpec, TestCa};
pub use self::chain::{signed_chain, signed_chain_in, verified_peer};
pub use self::client::{PeerClient, PeerConnection, PeerResponse, probe_client_config};
pub use self::identity::FakeIdentity;
pub use self::limiter::ScriptedLimiter;
pub use self::policy::{AllowList, PolicyFn};
pub use self::redis::{RedisServer, RedisTlsFiles, unused_loopback_port};
pub use self::resilience::ResilienceStack;
pub use self::telemetry::RecordingTelemetry;
pub use self::txn::{TEST_TXN_ISSUER, TxnIssuer};
pub use self::wimse::{ManualClock, TEST_WIT_ISSUER, WitIssuer, WorkloadKey, hash as token_hash};

/// A checkpoint line of a chained audit log (see [`audit`](crate::audit)), without its
/// newline, for the record `seq` whose predecessor hashes to `prev`, signed with `svid`'s key
/// at `time`: a verifier's tests forge checkpoints with it (another CA, another workload).
pub fn audit_checkpoint_line(
    svid: &crate::X509Svid,
    seq: u64,
    prev: &str,
    last: bool,
    time: std::time::SystemTime,
) -> String {
    crate::audit::signed_checkpoint_line(svid, seq, prev, last, time)
        .unwrap_or_else(|e| panic!("signing a checkpoint with the SVID: {e}"))
}

/// The SHA-256 of `line` in lowercase hex, as a chained audit log's `prev` holds it.
pub fn audit_line_hash(line: &str) -> String {
    crate::audit::digest(line.as_bytes())
}

/// Blocks the calling thread until every audit and telemetry record `server` has produced so
/// far has reached its sink. For tests under tokio's paused time: awaiting
/// [`Server::flush_audit`](crate::Server::flush_audit) there lets the paused clock run ahead
/// while the writer thread works, firing timers the test did not ask for.
pub fn flush_audit_blocking(server: &crate::Server) {
    server.flush_audit_blocking();
}

/// The live identity of `server`, for tests that call one service from another before the
/// outbound transport exists for them. Services cannot reach it: it can replace the
/// workload's certificate and trust store.
pub fn identity_state(server: &crate::Server) -> &std::sync::Arc<crate::tls::IdentityState> {
    server.identity()
}

/// Sets `kind`'s health on `server` as its provider would, so a test can reach the paths a
/// degraded or unavailable provider takes. Services cannot: outside the testkit only the
/// framework and its providers change health.
pub fn set_health(
    server: &crate::Server,
    kind: crate::ProviderKind,
    state: crate::State,
    cause: Option<String>,
) {
    server.monitor().set(kind, state, cause);
}
