//! Verifying a received chain header, with a cache of the headers that verified.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderValue;
use quick_cache::Equivalent;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use super::error::ChainRejection;
use super::token::{Certificates, MAX_X5C, VERSION_2};
use super::{ATTACHMENT_SEPARATOR, Chain, Link, MAX_CHAIN_HEADER_LEN, MAX_CHAIN_LINKS, token};
use crate::tls::{Current, IdentityState, VerifiedPeer};

/// How many verified headers a [`ChainVerifier`] keeps by default.
pub const DEFAULT_CHAIN_CACHE_CAPACITY: usize = 4096;

/// The upstream hops of a request whose chain header verified: every link but the sending
/// hop's own (the pipeline adds the sending hop from its mTLS certificate), each
/// `verified: true`, the header as received, and the header as a call made while serving the
/// request forwards it (with its own token on top): the received one, with the peer's
/// certificates attached to the sending hop's token when that token is version 2.
///
/// Cloning copies a pointer. A request without a chain header has the empty chain.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct VerifiedChain {
    inner: Option<Arc<Verified>>,
}

#[derive(PartialEq, Eq)]
struct Verified {
    links: Vec<Link>,
    header: HeaderValue,
    /// `header` with the peer's certificates attached to its last token when that token is
    /// version 2 (the same bytes otherwise): what the next hop receives below its own token.
    forwarded: HeaderValue,
    /// The tokens in `header`.
    tokens: usize,
    /// The base64url SHA-256 of the tokens' compact JWS joined by commas (attachments left
    /// out): the `prev` of the next hop's token.
    digest: String,
    /// The base64url SHA-256 of `forwarded`: what a signer keys the headers it made on.
    forwarded_digest: String,
}

impl fmt::Debug for VerifiedChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VerifiedChain").field(&self.links()).finish()
    }
}

impl VerifiedChain {
    /// The chain of a request that carried no chain header: the sending hop started it.
    pub fn empty() -> Self {
        Self::default()
    }

    /// The upstream links, most distal first, without the sending hop.
    pub fn links(&self) -> &[Link] {
        self.inner.as_deref().map_or(&[], |v| &v.links)
    }

    /// The upstream links as a [`Chain`], to which the pipeline appends the sending hop.
    pub fn to_chain(&self) -> Chain {
        Chain::from(self.links())
    }

    /// The header as received, or `None` for the empty chain.
    pub fn header(&self) -> Option<&HeaderValue> {
        self.inner.as_deref().map(|v| &v.header)
    }

    /// The header as a call made while serving the request forwards it (below its own token):
    /// the received header, with the peer's certificates attached to the sending hop's token
    /// when that token is version 2. `None` for the empty chain.
    pub fn forwarded(&self) -> Option<&HeaderValue> {
        self.inner.as_deref().map(|v| &v.forwarded)
    }

    /// Whether the request carried no chain header.
    pub fn is_empty(&self) -> bool {
        self.inner.is_none()
    }

    /// Whether both are the same verification (a cache hit hands out the same one).
    #[cfg(test)]
    pub(crate) fn ptr_eq(&self, other: &Self) -> bool {
        match (&self.inner, &other.inner) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }

    /// The tokens in the received header (the upstream links and the sending hop's).
    pub(crate) fn tokens(&self) -> usize {
        self.inner.as_deref().map_or(0, |v| v.tokens)
    }

    /// The `prev` digest of a token signed on top of this chain.
    pub(crate) fn digest(&self) -> Option<&str> {
        self.inner.as_deref().map(|v| v.digest.as_str())
    }

    /// The digest of [`forwarded`](Self::forwarded): it determines every byte a token signed
    /// on top of this chain depends on.
    pub(crate) fn forwarded_digest(&self) -> Option<&str> {
        self.inner.as_deref().map(|v| v.forwarded_digest.as_str())
    }
}

/// Verifies received chain headers against the workload's trust store, keeping the headers
/// that verified (positive results only) so that the requests of one call tree pay for the
/// signatures once.
///
/// A cached result is reused only for the same header bytes, the same mTLS peer (its SPIFFE ID
/// and the certificates it presented: a version 2 sending token is verified with them, and
/// they are attached when the chain is forwarded) and the same identity generation (a rotation or bundle update makes every entry unreachable), and only
/// while `now` is inside the window in which every token and certificate was valid: each hit
/// checks expiry again.
pub struct ChainVerifier {
    cache: Option<quick_cache::sync::Cache<Key, Entry>>,
}

impl fmt::Debug for ChainVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainVerifier")
            .field("cached", &self.cache.as_ref().map_or(0, |c| c.len()))
            .finish()
    }
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Clone)]
struct Entry {
    chain: VerifiedChain,
    from: SystemTime,
    until: SystemTime,
}

struct Key {
    header: HeaderValue,
    peer: VerifiedPeer,
    generation: u64,
}

/// A lookup without building a [`Key`]: a hit copies nothing.
struct Query<'a> {
    header: &'a [u8],
    peer: &'a VerifiedPeer,
    generation: u64,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Query::from(self).hash(state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        Query::from(self).equivalent(other)
    }
}

impl Eq for Key {}

impl<'a> From<&'a Key> for Query<'a> {
    fn from(key: &'a Key) -> Self {
        Query {
            header: key.header.as_bytes(),
            peer: &key.peer,
            generation: key.generation,
        }
    }
}

/// How many bytes at the end of a header its cache key hashes.
const HASHED_TAIL: usize = 32;

impl Hash for Query<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Only the header's length and its last bytes are hashed, not its few hundred: a
        // cached header verified, so it ends with the sending hop's signature, which already
        // tells entries apart. Lookups compare everything else (every byte of the header, the
        // peer's certificates, which fix its SPIFFE ID, and the generation), so a header
        // differing anywhere, or from another peer, never takes a cached entry.
        state.write_usize(self.header.len());
        state.write(&self.header[self.header.len().saturating_sub(HASHED_TAIL)..]);
        state.write_u64(self.generation);
    }
}

impl Equivalent<Key> for Query<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.generation == key.generation
            && self.header == key.header.as_bytes()
            && self.peer.same_certificates(&key.peer)
    }
}

impl ChainVerifier {
    /// A verifier keeping up to [`DEFAULT_CHAIN_CACHE_CAPACITY`] verified headers.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_CHAIN_CACHE_CAPACITY)
    }

    /// A verifier keeping up to `capacity` verified headers; `0` verifies every header afresh.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            cache: (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity)),
        }
    }

    /// Verifies the chain header `header` received from the mTLS peer `peer` by the workload
    /// of `identity`, at `now`. Every check is listed on [`CHAIN_HEADER`](super::CHAIN_HEADER).
    pub fn verify(
        &self,
        identity: &IdentityState,
        header: &HeaderValue,
        peer: &VerifiedPeer,
        now: SystemTime,
    ) -> Result<VerifiedChain, ChainRejection> {
        // One snapshot: the generation, the trust store and our own ID belong together.
        let current = identity.current();
        let query = Query {
            header: header.as_bytes(),
            peer,
            generation: current.generation,
        };
        if let Some(entry) = self.cache.as_ref().and_then(|c| c.get(&query))
            && entry.from <= now
            && now < entry.until
        {
            return Ok(entry.chain);
        }
        let entry = verify(&current, header, peer, now)?;
        if let Some(cache) = &self.cache {
            let key = Key {
                header: header.clone(),
                peer: peer.clone(),
                generation: current.generation,
            };
            cache.insert(key, entry.clone());
        }
        Ok(entry.chain)
    }
}

/// One entry of a header: a compact JWS and the certificates attached to it.
struct Part<'a> {
    jws: &'a str,
    attached: Vec<CertificateDer<'static>>,
}

/// Splits an entry `<jws>[~<b64url der>…]`. Every attached part must be canonical unpadded
/// base64url and non-empty, at most [`MAX_X5C`] of them.
fn part(text: &str) -> Result<Part<'_>, ChainRejection> {
    let mut parts = text.split(ATTACHMENT_SEPARATOR);
    let jws = parts.next().unwrap_or_default();
    let mut attached = Vec::new();
    for part in parts {
        if part.is_empty() || attached.len() == MAX_X5C {
            return Err(ChainRejection::Malformed);
        }
        let der = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| ChainRejection::Malformed)?;
        attached.push(CertificateDer::from(der));
    }
    Ok(Part { jws, attached })
}

/// Every check, uncached.
fn verify(
    current: &Current,
    header: &HeaderValue,
    peer: &VerifiedPeer,
    now: SystemTime,
) -> Result<Entry, ChainRejection> {
    use ChainRejection::{Broken, Malformed, PeerMismatch, TooLarge, TooManyLinks, WrongAudience};
    if header.len() > MAX_CHAIN_HEADER_LEN {
        return Err(TooLarge);
    }
    let text = header.to_str().map_err(|_| Malformed)?;
    let tokens = text.split(',').count();
    if tokens > MAX_CHAIN_LINKS {
        return Err(TooManyLinks);
    }
    // The digest of the tokens' JWS so far, joined by commas: the `prev` each token must carry.
    let mut digest = Sha256::new();
    let mut links = Vec::with_capacity(tokens);
    let mut addressed_to: Option<String> = None;
    let mut sender_version = 0;
    let (mut from, mut until) = (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH);
    for (i, text) in text.split(',').enumerate() {
        let entry = part(text)?;
        let certificates = if i + 1 == tokens {
            // The sending hop attaches nothing to its own token: the handshake carried its
            // certificates, and an attachment would be a second, unverified claim.
            if !entry.attached.is_empty() {
                return Err(Malformed);
            }
            Certificates::Peer {
                id: peer.spiffe_id(),
                chain: peer.certificates(),
            }
        } else {
            Certificates::Attached(&entry.attached)
        };
        let verified = token::verify(entry.jws, certificates, &current.trust, now)?;
        let claims = verified.claims;
        match (i, claims.prev) {
            (0, None) => {}
            (0, Some(_)) | (_, None) => return Err(Broken),
            (_, Some(prev)) => {
                if URL_SAFE_NO_PAD.encode(digest.clone().finalize()) != prev {
                    return Err(Broken);
                }
            }
        }
        if i > 0 {
            digest.update(b",");
        }
        digest.update(entry.jws.as_bytes());
        if addressed_to.is_some_and(|aud| aud != claims.iss) {
            return Err(Broken);
        }
        addressed_to = Some(claims.aud);
        sender_version = claims.v;
        links.push(claims.link.into_link(claims.iss));
        (from, until) = if i == 0 {
            (verified.from, verified.until)
        } else {
            (from.max(verified.from), until.min(verified.until))
        };
    }
    // The sending hop's token: signed by the mTLS peer, for us. Its link is the peer's, which
    // the pipeline takes from the certificate.
    let sender = links.pop().ok_or(Malformed)?;
    if sender.workload.as_deref() != Some(peer.spiffe_id().to_string().as_str()) {
        return Err(PeerMismatch);
    }
    if addressed_to.as_deref() != Some(current.id.to_string().as_str()) {
        return Err(WrongAudience);
    }
    let forwarded = if sender_version == VERSION_2 {
        attach(header, peer.certificates())?
    } else {
        header.clone()
    };
    let chain = VerifiedChain {
        inner: Some(Arc::new(Verified {
            links,
            forwarded_digest: URL_SAFE_NO_PAD.encode(Sha256::digest(forwarded.as_bytes())),
            header: header.clone(),
            forwarded,
            tokens,
            digest: URL_SAFE_NO_PAD.encode(digest.finalize()),
        })),
    };
    Ok(Entry { chain, from, until })
}

/// `header` with `certificates` attached to its last token.
fn attach(
    header: &HeaderValue,
    certificates: &[CertificateDer<'_>],
) -> Result<HeaderValue, ChainRejection> {
    // Unpadded base64 is at most 4/3 of the DER plus 3 bytes; one separator each.
    let attached: usize = certificates.iter().map(|c| c.len() * 4 / 3 + 4).sum();
    let mut value = BytesMut::with_capacity(header.len() + attached);
    value.put_slice(header.as_bytes());
    let mut text = String::with_capacity(attached);
    for certificate in certificates {
        text.push(ATTACHMENT_SEPARATOR);
        URL_SAFE_NO_PAD.encode_string(certificate.as_ref(), &mut text);
    }
    value.put_slice(text.as_bytes());
    HeaderValue::from_maybe_shared(Bytes::from(value)).map_err(|_| ChainRejection::Malformed)
}
