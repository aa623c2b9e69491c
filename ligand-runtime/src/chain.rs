//! The identity chain: who has handled a request, from the originating principal to the
//! immediate peer.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The header carrying the upstream chain between Ligand services, as a JSON array of links.
pub const CHAIN_HEADER: &str = "x-ligand-chain";

/// The largest chain header accepted, in bytes.
pub const MAX_CHAIN_HEADER_LEN: usize = 8 * 1024;

/// The most links accepted in a propagated chain (the immediate peer is added on top).
pub const MAX_CHAIN_LINKS: usize = 32;

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
    /// other code that must account for every field of a link reads them here: a field added
    /// to `Link` appears in this list (the destructuring below does not compile otherwise).
    pub fn dimensions(&self) -> [(&'static str, Option<&Arc<str>>); 5] {
        let Self {
            workload,
            user,
            device,
            host,
            external_party,
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

    fn is_empty(&self) -> bool {
        self.principal().is_none()
    }
}

/// The hops that have handled a request, most distal first and the immediate peer last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
#[non_exhaustive]
pub struct Chain(pub Vec<Link>);

impl From<Vec<Link>> for Chain {
    fn from(links: Vec<Link>) -> Self {
        Self(links)
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
        Self(Vec::new())
    }

    /// The links, most distal first.
    pub fn links(&self) -> &[Link] {
        &self.0
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

    /// Appends `link` as the new immediate peer.
    pub fn push(&mut self, link: Link) {
        self.0.push(link);
    }

    /// Parses a propagated chain header.
    ///
    /// The header is supplied by the peer and is untrusted: its size and link count are bounded,
    /// unknown fields are rejected and every link must name a principal. Upstream links are not
    /// yet signed, so policy must not grant trust to any link beyond the verified immediate peer.
    pub fn from_header(value: &[u8]) -> Result<Self, ChainHeaderError> {
        if value.len() > MAX_CHAIN_HEADER_LEN {
            return Err(ChainHeaderError::TooLong { len: value.len() });
        }
        let chain: Chain = serde_json::from_slice(value)
            .map_err(|e| ChainHeaderError::Malformed(e.to_string()))?;
        if chain.len() > MAX_CHAIN_LINKS {
            return Err(ChainHeaderError::TooManyLinks { links: chain.len() });
        }
        if let Some(index) = chain.0.iter().position(Link::is_empty) {
            return Err(ChainHeaderError::EmptyLink { index });
        }
        Ok(chain)
    }

    /// The header value that propagates this chain to the next hop.
    pub fn to_header(&self) -> String {
        // Serializing a Vec of string options cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("[]"))
    }
}

/// Why a propagated chain header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainHeaderError {
    /// The header is longer than [`MAX_CHAIN_HEADER_LEN`].
    #[error("chain header is {len} bytes, over the {MAX_CHAIN_HEADER_LEN}-byte limit")]
    TooLong {
        /// The header's length.
        len: usize,
    },
    /// The header carries more than [`MAX_CHAIN_LINKS`] links.
    #[error("chain header has {links} links, over the {MAX_CHAIN_LINKS}-link limit")]
    TooManyLinks {
        /// The number of links.
        links: usize,
    },
    /// A link names no principal.
    #[error("chain link {index} names no principal")]
    EmptyLink {
        /// The link's position.
        index: usize,
    },
    /// The header is not a JSON array of links.
    #[error("chain header is not a JSON array of links: {0}")]
    Malformed(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn principal_follows_documented_order() {
        let link = Link {
            device: Some("tpm:1".into()),
            external_party: Some("partner".into()),
            user: Some("alice".into()),
            ..Link::default()
        };
        assert_eq!(link.principal(), Some("alice"));
        assert_eq!(
            Link {
                host: Some("h".into()),
                ..Link::default()
            }
            .principal(),
            Some("h")
        );
        assert_eq!(Link::default().principal(), None);
    }

    #[test]
    fn header_round_trips() {
        let chain = Chain(vec![
            Link {
                user: Some("alice".into()),
                ..Link::default()
            },
            Link::workload("spiffe://example.org/gateway"),
        ]);
        assert_eq!(Chain::from_header(chain.to_header().as_bytes()), Ok(chain));
    }

    #[test]
    fn header_rejects_bad_input() {
        assert!(matches!(
            Chain::from_header(b"{}"),
            Err(ChainHeaderError::Malformed(_))
        ));
        assert!(matches!(
            Chain::from_header(br#"[{"workload":"a","admin":true}]"#),
            Err(ChainHeaderError::Malformed(_))
        ));
        assert_eq!(
            Chain::from_header(b"[{}]"),
            Err(ChainHeaderError::EmptyLink { index: 0 })
        );
        let many = format!(
            "[{}]",
            vec![r#"{"user":"u"}"#; MAX_CHAIN_LINKS + 1].join(",")
        );
        assert_eq!(
            Chain::from_header(many.as_bytes()),
            Err(ChainHeaderError::TooManyLinks {
                links: MAX_CHAIN_LINKS + 1
            })
        );
        let long = vec![b' '; MAX_CHAIN_HEADER_LEN + 1];
        assert!(matches!(
            Chain::from_header(&long),
            Err(ChainHeaderError::TooLong { .. })
        ));
    }

    proptest! {
        #[test]
        fn header_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Chain::from_header(&bytes);
        }

        #[test]
        fn accepted_headers_round_trip(
            users in proptest::collection::vec("[a-z]{1,12}", 0..MAX_CHAIN_LINKS),
        ) {
            let chain = Chain(users.into_iter().map(|u| Link { user: Some(u.into()), ..Link::default() }).collect());
            prop_assert_eq!(Chain::from_header(chain.to_header().as_bytes()), Ok(chain));
        }
    }
}
