//! Why a chain header was refused, and why one could not be signed.

/// Why a received chain header was refused. Every kind denies the request with status 400 and
/// the kind's [`code`](ChainRejection::code); the message names the kind and nothing else (the
/// header is the caller's, and which byte failed is of no use to anyone but an attacker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum ChainRejection {
    /// The header is not a comma-separated list of compact JWS of the documented shape (bad
    /// encoding, a missing or extra claim, a wrong `typ`, an algorithm Ligand never signs with,
    /// an unusable lifetime).
    #[error("identity chain is malformed")]
    Malformed,
    /// A token carries a wire-format version this service does not know.
    #[error("identity chain version is not supported")]
    UnsupportedVersion,
    /// The header is longer than [`MAX_CHAIN_HEADER_LEN`](super::MAX_CHAIN_HEADER_LEN).
    #[error("identity chain is too large")]
    TooLarge,
    /// The header carries more than [`MAX_CHAIN_LINKS`](super::MAX_CHAIN_LINKS) tokens.
    #[error("identity chain has too many links")]
    TooManyLinks,
    /// A token's certificate chain is not an X.509-SVID of a trusted domain, or does not name
    /// the token's issuer.
    #[error("identity chain signer is not trusted")]
    UntrustedSigner,
    /// A token's signature does not verify with its certificate's key.
    #[error("identity chain signature does not verify")]
    BadSignature,
    /// A token has expired: a replay, or a request tree that outlived the token lifetime.
    #[error("identity chain has expired")]
    Expired,
    /// A token was issued in the future (beyond the clock leeway).
    #[error("identity chain is not yet valid")]
    NotYetValid,
    /// The sending hop's token is addressed to another service.
    #[error("identity chain is addressed to another service")]
    WrongAudience,
    /// The tokens do not link up: one was removed, inserted or moved, or a token is not
    /// addressed to the hop that signed the next.
    #[error("identity chain is broken")]
    Broken,
    /// The sending hop's token was not signed by the mTLS peer that sent it.
    #[error("identity chain was not signed by the peer")]
    PeerMismatch,
}

impl ChainRejection {
    /// The stable machine-readable code sent as `error_code`; every one starts with `CHAIN_`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed => "CHAIN_MALFORMED",
            Self::UnsupportedVersion => "CHAIN_UNSUPPORTED_VERSION",
            Self::TooLarge => "CHAIN_TOO_LARGE",
            Self::TooManyLinks => "CHAIN_TOO_MANY_LINKS",
            Self::UntrustedSigner => "CHAIN_UNTRUSTED_SIGNER",
            Self::BadSignature => "CHAIN_BAD_SIGNATURE",
            Self::Expired => "CHAIN_EXPIRED",
            Self::NotYetValid => "CHAIN_NOT_YET_VALID",
            Self::WrongAudience => "CHAIN_WRONG_AUDIENCE",
            Self::Broken => "CHAIN_BROKEN",
            Self::PeerMismatch => "CHAIN_PEER_MISMATCH",
        }
    }
}

/// Why a hop could not sign its chain header for an outbound call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The upstream chain plus this hop's token would exceed
    /// [`MAX_CHAIN_HEADER_LEN`](super::MAX_CHAIN_HEADER_LEN): the receiver would refuse it.
    #[error("identity chain would be {len} bytes, over the {max}-byte limit")]
    TooLarge {
        /// The header's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The upstream chain plus this hop's token would exceed
    /// [`MAX_CHAIN_LINKS`](super::MAX_CHAIN_LINKS) tokens.
    #[error("identity chain would have {links} links, over the {max}-link limit")]
    TooManyLinks {
        /// The number of tokens.
        links: usize,
        /// The limit.
        max: usize,
    },
    /// Signing failed (the key was checked when the identity was loaded, so this is not
    /// expected).
    #[error("signing the identity chain failed: {0}")]
    Signing(String),
}
