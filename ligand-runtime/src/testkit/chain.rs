use std::time::SystemTime;

use http::HeaderValue;
use spiffe::SpiffeId;

use crate::chain::{ChainSigner, ChainVerifier, ChainVersion, VerifiedChain};
use crate::error::BoxError;
use crate::tls::{IdentityState, VerifiedPeer};

/// The chain header the last of `hops` sends to `audience` at `now`, when the request went
/// through `hops` in order: each hop verifies the header the one before sent it, with that hop
/// as its mTLS peer, and signs its own token on top, as served hops do (in the default
/// [`ChainVersion`]).
///
/// # Errors
/// If a hop refuses the header of the one before (for example, when its trust store does not
/// hold that hop's trust domain) or signing fails.
pub fn signed_chain(
    hops: &[&IdentityState],
    audience: &SpiffeId,
    now: SystemTime,
) -> Result<HeaderValue, BoxError> {
    let hops: Vec<(&IdentityState, ChainVersion)> = hops
        .iter()
        .map(|hop| (*hop, ChainVersion::default()))
        .collect();
    signed_chain_in(&hops, audience, now)
}

/// As [`signed_chain`], each hop signing in its own [`ChainVersion`]: a fleet in the middle of
/// a rolling upgrade.
///
/// # Errors
/// As [`signed_chain`].
pub fn signed_chain_in(
    hops: &[(&IdentityState, ChainVersion)],
    audience: &SpiffeId,
    now: SystemTime,
) -> Result<HeaderValue, BoxError> {
    let verifier = ChainVerifier::with_capacity(0);
    let mut upstream = VerifiedChain::empty();
    let mut sent: Option<(HeaderValue, VerifiedPeer)> = None;
    for (i, (hop, version)) in hops.iter().enumerate() {
        if let Some((header, from)) = &sent {
            upstream = verifier.verify(hop, header, from, now)?;
        }
        let to = match hops.get(i + 1) {
            Some((next, _)) => next.spiffe_id(),
            None => audience.clone(),
        };
        let signer = ChainSigner::new().with_capacity(0).with_version(*version);
        let header = signer.header(hop, Some(&upstream), &to, now)?;
        sent = Some((header, verified_peer(hop)));
    }
    Ok(sent.ok_or("a chain needs at least one hop")?.0)
}

/// The peer a service sees when the workload of `identity` connects to it over mTLS: what
/// [`ChainVerifier::verify`] takes, for verifying headers without a connection.
pub fn verified_peer(identity: &IdentityState) -> VerifiedPeer {
    VerifiedPeer::of_identity(identity)
}
