//! Signing this hop's token on top of the verified upstream chain, with a cache of the
//! headers signed.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use http::HeaderValue;
use quick_cache::Equivalent;
use spiffe::SpiffeId;

use super::error::ChainError;
use super::token::{Claims, LinkClaims};
use super::verify::{DEFAULT_CHAIN_CACHE_CAPACITY, VerifiedChain};
use super::{ChainVersion, Link, MAX_CHAIN_HEADER_LEN, MAX_CHAIN_LINKS, MAX_CHAIN_TOKEN_LIFETIME};
use crate::tls::{Current, IdentityState};

/// How long a token this hop signs is valid: five minutes.
///
/// A token must outlive the whole request tree below the hop that signed it, since every hop
/// further down verifies it again (a slow downstream call after four minutes still carries the
/// first hop's token). Receivers accept at most [`MAX_CHAIN_TOKEN_LIFETIME`].
pub const DEFAULT_CHAIN_TOKEN_LIFETIME: Duration = Duration::from_secs(5 * 60);

/// Signs this hop's chain header for outbound calls: the verified upstream header (as
/// forwarded: see [`VerifiedChain::forwarded`]) with this hop's own token appended, addressed
/// to the service called, in [`ChainVersion::V2`] unless [`with_version`](Self::with_version)
/// says otherwise.
///
/// Tokens are kept per (upstream chain as forwarded, audience, identity generation) and signed again when
/// less than half their lifetime remains, so a busy call path signs about once every two and a
/// half minutes per upstream chain and audience; a rotation makes every kept token unreachable.
pub struct ChainSigner {
    version: ChainVersion,
    lifetime: Duration,
    link: LinkClaims,
    cache: Option<quick_cache::sync::Cache<Key, Entry>>,
}

impl fmt::Debug for ChainSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainSigner")
            .field("version", &self.version)
            .field("lifetime", &self.lifetime)
            .field("link", &self.link)
            .field("cached", &self.cache.as_ref().map_or(0, |c| c.len()))
            .finish()
    }
}

impl Default for ChainSigner {
    fn default() -> Self {
        Self::new()
    }
}

/// The last chain header one caller was given, with the identity generation it was signed
/// in; see [`ChainSigner::header_memo`]. A clone starts empty.
#[derive(Default)]
pub(crate) struct ChainMemo(Mutex<Option<(u64, Entry)>>);

impl Clone for ChainMemo {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl fmt::Debug for ChainMemo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kept = self.0.lock().is_ok_and(|kept| kept.is_some());
        f.debug_struct("ChainMemo").field("kept", &kept).finish()
    }
}

#[derive(Clone)]
struct Entry {
    header: HeaderValue,
    issued: SystemTime,
    refresh: SystemTime,
}

impl Entry {
    /// Whether the header is still the one to send at `now`: issued by then, and less than
    /// half its lifetime gone.
    fn fresh_at(&self, now: SystemTime) -> bool {
        self.issued <= now && now < self.refresh
    }
}

struct Key {
    /// The digest of the upstream chain as forwarded (empty for a chain this hop starts).
    upstream: Box<str>,
    audience: SpiffeId,
    generation: u64,
}

struct Query<'a> {
    upstream: &'a str,
    audience: &'a SpiffeId,
    generation: u64,
}

impl Hash for Query<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.upstream.hash(state);
        self.audience.hash(state);
        self.generation.hash(state);
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Query::from(self).hash(state);
    }
}

impl<'a> From<&'a Key> for Query<'a> {
    fn from(key: &'a Key) -> Self {
        Query {
            upstream: &key.upstream,
            audience: &key.audience,
            generation: key.generation,
        }
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        Query::from(self).equivalent(other)
    }
}

impl Eq for Key {}

impl Equivalent<Key> for Query<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.generation == key.generation
            && *self.upstream == *key.upstream
            && *self.audience == key.audience
    }
}

impl ChainSigner {
    /// A signer issuing tokens valid for [`DEFAULT_CHAIN_TOKEN_LIFETIME`], keeping up to
    /// [`DEFAULT_CHAIN_CACHE_CAPACITY`] of them.
    pub fn new() -> Self {
        Self {
            version: ChainVersion::default(),
            lifetime: DEFAULT_CHAIN_TOKEN_LIFETIME,
            link: LinkClaims::default(),
            cache: Some(quick_cache::sync::Cache::new(DEFAULT_CHAIN_CACHE_CAPACITY)),
        }
    }

    /// The same signer signing tokens of `version`. [`ChainVersion::V1`] is for a rolling
    /// upgrade: keep it until every receiver verifies version 2.
    pub fn with_version(mut self, version: ChainVersion) -> Self {
        self.version = version;
        self
    }

    /// The version of the tokens this signer signs.
    pub fn version(&self) -> ChainVersion {
        self.version
    }

    /// The same signer keeping up to `capacity` tokens; `0` signs every header afresh.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.cache = (capacity > 0).then(|| quick_cache::sync::Cache::new(capacity));
        self
    }

    /// The same signer issuing tokens valid for `lifetime`, capped at
    /// [`MAX_CHAIN_TOKEN_LIFETIME`] (receivers refuse longer ones) and at least a second.
    pub fn with_lifetime(mut self, lifetime: Duration) -> Self {
        self.lifetime = lifetime.clamp(Duration::from_secs(1), MAX_CHAIN_TOKEN_LIFETIME);
        self
    }

    /// The same signer vouching for `link`'s user, device, host and external party in this
    /// hop's tokens. Its workload is ignored: a hop's workload is the SPIFFE ID of its SVID.
    pub fn with_link(mut self, link: &Link) -> Self {
        self.link = LinkClaims::of(link);
        self
    }

    /// The chain header for a call to `audience` made by the workload of `identity` at `now`:
    /// `upstream`'s header as forwarded, a comma and this hop's token, or this hop's token
    /// alone when there is no upstream chain.
    pub fn header(
        &self,
        identity: &IdentityState,
        upstream: Option<&VerifiedChain>,
        audience: &SpiffeId,
        now: SystemTime,
    ) -> Result<HeaderValue, ChainError> {
        self.header_as(&identity.current(), upstream, audience, now)
    }

    /// As [`header`](Self::header), signed with the identity snapshot `current`: the one whose
    /// SVID the connection carrying the header presents.
    pub(crate) fn header_as(
        &self,
        current: &Current,
        upstream: Option<&VerifiedChain>,
        audience: &SpiffeId,
        now: SystemTime,
    ) -> Result<HeaderValue, ChainError> {
        self.entry_as(current, upstream, audience, now)
            .map(|entry| entry.header)
    }

    /// As [`header_as`](Self::header_as) for a caller whose upstream chain and audience are
    /// the same on every call, which keeps the last header in `memo`: while that header is
    /// one the signer's cache would give (same identity generation, less than half its
    /// lifetime gone), it is taken from `memo` without the cache's hashing and lookup. A
    /// signer without a cache signs every call, with or without a memo.
    pub(crate) fn header_memo(
        &self,
        memo: &ChainMemo,
        current: &Current,
        upstream: Option<&VerifiedChain>,
        audience: &SpiffeId,
        now: SystemTime,
    ) -> Result<HeaderValue, ChainError> {
        if self.cache.is_none() {
            return self.header_as(current, upstream, audience, now);
        }
        if let Ok(kept) = memo.0.lock()
            && let Some((generation, entry)) = &*kept
            && *generation == current.generation
            && entry.fresh_at(now)
        {
            return Ok(entry.header.clone());
        }
        let entry = self.entry_as(current, upstream, audience, now)?;
        let header = entry.header.clone();
        if let Ok(mut kept) = memo.0.lock() {
            *kept = Some((current.generation, entry));
        }
        Ok(header)
    }

    /// The header for `header_as`, with when it was issued and when it is signed again.
    fn entry_as(
        &self,
        current: &Current,
        upstream: Option<&VerifiedChain>,
        audience: &SpiffeId,
        now: SystemTime,
    ) -> Result<Entry, ChainError> {
        let upstream = upstream.filter(|u| !u.is_empty());
        let query = Query {
            upstream: upstream
                .and_then(VerifiedChain::forwarded_digest)
                .unwrap_or_default(),
            audience,
            generation: current.generation,
        };
        if let Some(entry) = self.cache.as_ref().and_then(|c| c.get(&query))
            && entry.fresh_at(now)
        {
            return Ok(entry);
        }
        let tokens = upstream.map_or(0, VerifiedChain::tokens) + 1;
        if tokens > MAX_CHAIN_LINKS {
            return Err(ChainError::TooManyLinks {
                links: tokens,
                max: MAX_CHAIN_LINKS,
            });
        }
        let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            v: self.version.number(),
            iss: current.id.to_string(),
            aud: audience.to_string(),
            iat,
            exp: iat + self.lifetime.as_secs(),
            prev: upstream.and_then(VerifiedChain::digest).map(str::to_owned),
            link: self.link.clone(),
        };
        let token = current.signing.sign(&claims)?;
        let received = upstream.and_then(VerifiedChain::forwarded);
        let len = received.map_or(0, |h| h.len() + 1) + token.len();
        if len > MAX_CHAIN_HEADER_LEN {
            return Err(ChainError::TooLarge {
                len,
                max: MAX_CHAIN_HEADER_LEN,
            });
        }
        let mut value = BytesMut::with_capacity(len);
        if let Some(received) = received {
            value.put_slice(received.as_bytes());
            value.put_u8(b',');
        }
        value.put_slice(token.as_bytes());
        let header = HeaderValue::from_maybe_shared(value.freeze())
            .map_err(|e| ChainError::Signing(e.to_string()))?;
        let issued = UNIX_EPOCH + Duration::from_secs(iat);
        let entry = Entry {
            header,
            issued,
            refresh: issued + self.lifetime / 2,
        };
        if let Some(cache) = &self.cache {
            let key = Key {
                upstream: query.upstream.into(),
                audience: audience.clone(),
                generation: current.generation,
            };
            cache.insert(key, entry.clone());
        }
        Ok(entry)
    }
}
