//! The identity chain: who has handled a request, from the originating principal to the
//! immediate peer, each hop signed by the hop itself.
//!
//! See `chain/wire-format.md` (also the documentation of [`CHAIN_HEADER`]) for the wire
//! format, every check a receiver makes and the rule for evolving the format.
//!
//! # Design notes
//!
//! - The identity generation the caches key on lives in the identity snapshot itself (read
//!   with the trust store and the signing key in one atomic load), so a verification can
//!   never cache a result made with one trust store under another store's generation.
//! - The signer caches by the digest of the upstream chain as forwarded rather than its
//!   bytes: the digest is computed once at verification and is collision-resistant, and
//!   hashing it is cheaper than hashing a header of several kilobytes on every call. It is
//!   the forwarded header's digest, not `prev`, because the forwarded header also carries
//!   the attached certificates.
//! - Version 2 moves the sending hop's certificates out of the header (the receiver has them
//!   from the handshake) and has each forwarding hop attach them for the hops below: the
//!   header a hop sends shrinks by the size of its own certificates, and every hop still
//!   verifies every upstream token against its own trust store. `prev` covers the compact
//!   JWS only, so that attaching changes no digest; the signed `x5t#S256` is what binds an
//!   attachment to its token.
//! - The version 2 verify cache keys on the peer's certificates, not only its SPIFFE ID: the
//!   sending hop's token is verified with them, and they are what a forwarded chain carries.
//! - A token whose `aud` is not the next token's `iss` is [`ChainRejection::Broken`], like a
//!   digest mismatch: both say the tokens do not belong together in this order.
//!   [`ChainRejection::WrongAudience`] is kept for the one case a caller can act on: the
//!   whole chain was addressed to another service.
//! - The version is read before the signature, so a receiver meeting a newer sender answers
//!   `CHAIN_UNSUPPORTED_VERSION` even when the newer format's claims would not parse as
//!   version 1's. Reading it unverified decides nothing but which rules refuse the token.
//! - Receivers cap a token's lifetime ([`MAX_CHAIN_TOKEN_LIFETIME`]): the signer's choice
//!   of `exp` must not make a captured chain replayable for hours.
//! - Several `x-ligand-chain` header lines are refused rather than joined: a proxy that
//!   splits or merges them is guessing, and the digests cover exact bytes.
//! - RSA SVIDs sign `PS256`; `RS256` is accepted from other implementations.

mod error;
mod sign;
mod token;
mod verify;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use self::error::{ChainError, ChainRejection};
pub(crate) use self::sign::ChainMemo;
pub use self::sign::{ChainSigner, DEFAULT_CHAIN_TOKEN_LIFETIME};
pub(crate) use self::token::{SignedRejection, SigningKey, verify_signed};
pub use self::verify::{ChainVerifier, DEFAULT_CHAIN_CACHE_CAPACITY, VerifiedChain};

/// The header carrying the signed chain between Ligand services.
///
#[doc = include_str!("chain/wire-format.md")]
pub const CHAIN_HEADER: &str = "x-ligand-chain";

/// The largest chain header accepted or sent, in bytes: ten hops and more when each SVID is a
/// P-256 leaf alone (about 1.25 KB a version 1 token, about 1.2 KB a forwarded version 2 token
/// with its attached leaf, about 0.5 KB the sending hop's version 2 token), fewer when
/// intermediates travel too (a typical 700-byte CA certificate adds about 0.95 KB per
/// forwarded token, 1.2 KB in version 1's `x5c`, whose DER is base64-encoded twice). It stays
/// below hyper's default HTTP/2 header list limit (16 KiB for all headers of a request) so
/// that a chain the framework accepts also reaches it.
pub const MAX_CHAIN_HEADER_LEN: usize = 14 * 1024;

/// Separates a forwarded version 2 token from the certificates attached to it, and those
/// certificates from each other: `<jws>~<base64url DER>[~<base64url DER>…]`. It is neither a
/// base64url character nor `.` or `,`, so it cannot occur inside a compact JWS.
pub const ATTACHMENT_SEPARATOR: char = '~';

/// The wire-format version of the tokens a hop signs (see [`CHAIN_HEADER`]). Every version
/// here is verified whatever a hop signs: receivers learn a version before senders emit it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ChainVersion {
    /// Version 1: each token carries its signer's certificates (`x5c`). For a fleet whose
    /// receivers do not all verify version 2 yet.
    V1,
    /// Version 2 (the default): each token names its signer's leaf by thumbprint
    /// (`x5t#S256`); the receiving hop has the certificates from the mTLS handshake and
    /// attaches them when it forwards the chain.
    #[default]
    V2,
}

impl ChainVersion {
    /// The version's number, as tokens carry it in `v`.
    pub fn number(self) -> u64 {
        match self {
            Self::V1 => 1,
            Self::V2 => 2,
        }
    }

    /// The version numbered `number`, if this build signs it.
    pub fn from_number(number: u64) -> Option<Self> {
        match number {
            1 => Some(Self::V1),
            2 => Some(Self::V2),
            _ => None,
        }
    }
}

/// The most tokens accepted or sent in a chain header (the sending hop's included).
pub const MAX_CHAIN_LINKS: usize = 16;

/// The longest lifetime (`exp - iat`) a received token may claim. A longer one is refused as
/// malformed: it would make a stolen chain replayable for longer than any request tree needs.
pub const MAX_CHAIN_TOKEN_LIFETIME: Duration = Duration::from_secs(60 * 60);

/// The clock skew tolerated between hops when checking `iat` and `exp`.
pub const CHAIN_CLOCK_LEEWAY: Duration = Duration::from_secs(30);

/// One hop of a [`Chain`]: a principal that handled the request. Each field is one identity
/// dimension; absent dimensions are `None`. Fields are shared strings, so cloning a link (once
/// per request for the immediate peer) copies no bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Link {
    /// The SPIFFE ID of the workload that handled this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<Arc<str>>,
    /// The identity provider's subject for the human principal of this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Arc<str>>,
    /// The hardware-rooted identity of the device that handled this hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Arc<str>>,
    /// The OS and software-stack identity of the host on that device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Arc<str>>,
    /// The credential subject of a party outside the organisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_party: Option<Arc<str>>,
    /// Whether the framework verified this link: the mTLS peer's certificate, or a chain token
    /// signed by the hop. A link built by hand is not verified.
    #[serde(default)]
    pub verified: bool,
}

impl Link {
    /// A link for a workload identified by its SPIFFE ID.
    pub fn workload(id: impl Into<Arc<str>>) -> Self {
        Self {
            workload: Some(id.into()),
            ..Self::default()
        }
    }

    /// The same link with `id` as its workload.
    pub fn with_workload(mut self, id: impl Into<Arc<str>>) -> Self {
        self.workload = Some(id.into());
        self
    }

    /// The same link with `subject` as its human principal.
    pub fn with_user(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.user = Some(subject.into());
        self
    }

    /// The same link with `id` as its device.
    pub fn with_device(mut self, id: impl Into<Arc<str>>) -> Self {
        self.device = Some(id.into());
        self
    }

    /// The same link with `id` as its host.
    pub fn with_host(mut self, id: impl Into<Arc<str>>) -> Self {
        self.host = Some(id.into());
        self
    }

    /// The same link with `subject` as its external party.
    pub fn with_external_party(mut self, subject: impl Into<Arc<str>>) -> Self {
        self.external_party = Some(subject.into());
        self
    }

    /// Every identity dimension of the link, by name, in a fixed order. A decision cache or any
    /// other code that must account for every field of a link reads them here, and reads
    /// [`verified`](Link::verified) beside them (it is not a dimension): a field added to
    /// `Link` must be placed here or there (the destructuring below does not compile
    /// otherwise).
    pub fn dimensions(&self) -> [(&'static str, Option<&Arc<str>>); 5] {
        let Self {
            workload,
            user,
            device,
            host,
            external_party,
            verified: _,
        } = self;
        [
            ("workload", workload.as_ref()),
            ("user", user.as_ref()),
            ("device", device.as_ref()),
            ("host", host.as_ref()),
            ("external_party", external_party.as_ref()),
        ]
    }

    /// The principal of this hop: the first present field in the order workload, user,
    /// external party, device, host.
    pub fn principal(&self) -> Option<&str> {
        self.principal_shared().map(|p| &**p)
    }

    /// The principal as the shared string it is stored in, for keys that outlive the request
    /// (a rate limiter's per-caller state) without copying it.
    pub fn principal_shared(&self) -> Option<&Arc<str>> {
        [
            &self.workload,
            &self.user,
            &self.external_party,
            &self.device,
            &self.host,
        ]
        .into_iter()
        .find_map(Option::as_ref)
    }
}

/// The hops that have handled a request, most distal first and the immediate peer last.
///
/// Up to two links are kept inline: the pipeline's chain always holds at least the peer, and a
/// request's chain is built on every request, so the common chains (the peer, or one hop and
/// the peer) cost no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Chain(SmallVec<[Link; 2]>);

impl From<Vec<Link>> for Chain {
    fn from(links: Vec<Link>) -> Self {
        Self(SmallVec::from_vec(links))
    }
}

impl From<&[Link]> for Chain {
    fn from(links: &[Link]) -> Self {
        Self(SmallVec::from(links))
    }
}

impl FromIterator<Link> for Chain {
    fn from_iter<I: IntoIterator<Item = Link>>(links: I) -> Self {
        Self(links.into_iter().collect())
    }
}

impl Chain {
    /// An empty chain.
    pub fn new() -> Self {
        Self(SmallVec::new())
    }

    /// The links, most distal first.
    pub fn links(&self) -> &[Link] {
        &self.0
    }

    /// The links, most distal first, to edit in place.
    pub fn links_mut(&mut self) -> &mut [Link] {
        &mut self.0
    }

    /// The immediate peer: the last link.
    pub fn peer(&self) -> Option<&Link> {
        self.0.last()
    }

    /// The number of hops.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no hop is recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Inserts `link` at `index` (`0` is the most distal hop).
    ///
    /// # Panics
    /// If `index` is greater than the chain's length, as [`Vec::insert`] does.
    pub fn insert(&mut self, index: usize, link: Link) {
        self.0.insert(index, link);
    }

    /// Appends `link` as the new immediate peer.
    pub fn push(&mut self, link: Link) {
        self.0.push(link);
    }
}
