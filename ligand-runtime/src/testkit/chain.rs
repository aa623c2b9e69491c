use std::time::SystemTime;

use http::HeaderValue;
use spiffe::SpiffeId;

use crate::chain::{ChainSigner, ChainVerifier, VerifiedChain};
use crate::error::BoxError;
use crate::tls::IdentityState;

/// The chain header the last of `hops` sends to `audience` at `now`, when the request went
/// through `hops` in order: each hop verifies the header the one before sent it, with that hop
/// as its mTLS peer, and signs its own token on top, as served hops do.
///
/// # Errors
/// If a hop refuses the header of the one before (for example, when its trust store does not
/// hold that hop's trust domain) or signing fails.
pub fn signed_chain(
    hops: &[&IdentityState],
    audience: &SpiffeId,
    now: SystemTime,
) -> Result<HeaderValue, BoxError> {
    let signer = ChainSigner::new().with_capacity(0);
    let verifier = ChainVerifier::with_capacity(0);
    let mut upstream = VerifiedChain::empty();
    let mut sent: Option<(HeaderValue, SpiffeId)> = None;
    for (i, hop) in hops.iter().enumerate() {
        if let Some((header, from)) = &sent {
            upstream = verifier.verify(hop, header, from, now)?;
        }
        let to = match hops.get(i + 1) {
            Some(next) => next.spiffe_id(),
            None => audience.clone(),
        };
        let header = signer.header(hop, Some(&upstream), &to, now)?;
        sent = Some((header, hop.spiffe_id()));
    }
    Ok(sent.ok_or("a chain needs at least one hop")?.0)
}
