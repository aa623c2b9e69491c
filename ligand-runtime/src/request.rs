//! What a request asks for: the resource, the action and the metadata a binding extracts.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use smallvec::SmallVec;

use crate::chain::{Chain, Link};
use crate::txn::TxnClaims;

/// The target of a request, scoped by a kind so that several namespaces can coexist
/// (`http.path`, `grpc.method`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Resource {
    /// The namespace of `value`, such as `http.path`.
    pub kind: Cow<'static, str>,
    /// The resource within its kind, such as the route template `/accounts/{id}`.
    pub value: Cow<'static, str>,
}

impl Resource {
    /// The kind of resources named by an HTTP route template.
    pub const HTTP_PATH: &'static str = "http.path";

    /// A resource of any kind.
    pub fn new(kind: impl Into<Cow<'static, str>>, value: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind: kind.into(),
            value: value.into(),
        }
    }

    /// An HTTP route template, such as `/accounts/{id}`.
    pub fn http_path(template: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Self::HTTP_PATH, template)
    }
}

/// The operation performed on a [`Resource`]: an HTTP method or a named action such as `debit`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Action {
    /// The operation's name.
    pub name: Cow<'static, str>,
}

impl Action {
    /// An action with the given name.
    pub fn new(name: impl Into<Cow<'static, str>>) -> Self {
        Self { name: name.into() }
    }
}

/// The HTTP request line as the policy sees it under `input.request`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RequestLine {
    /// The HTTP method, as its name (`"GET"`).
    #[serde(serialize_with = "method_name")]
    pub method: http::Method,
    /// The path as the client sent it: percent-encoded and not normalised (`/accounts/a%2Fb`).
    /// Policies should match the route template (`resource`) and the decoded `params`
    /// instead, which are what the handler sees.
    pub path: RequestPath,
    /// The route's path parameters, percent-decoded exactly as the handler's `Path`
    /// extractor receives them (`{"id": "a/b"}`).
    pub params: PathParams,
}

impl RequestLine {
    /// The request line `method path`, without path parameters; `path` is a `&str`, a
    /// `String` or the request's [`http::Uri`], whose path is shared rather than copied.
    pub fn new(method: http::Method, path: impl Into<RequestPath>) -> Self {
        Self {
            method,
            path: path.into(),
            params: PathParams::default(),
        }
    }

    /// The same request line with the route's decoded path parameters.
    pub fn with_params(mut self, params: PathParams) -> Self {
        self.params = params;
        self
    }
}

/// The path of a request line, as the client sent it: a `str` (it dereferences to one).
///
/// Made from the request's [`http::Uri`], it shares the URI's bytes (a reference count, no
/// copy); made from a `&str` or a `String`, it owns the text.
#[derive(Clone, Default)]
pub struct RequestPath(PathRepr);

#[derive(Clone)]
enum PathRepr {
    /// The path of a request URI, the part before any `?`.
    Uri(http::uri::PathAndQuery),
    Owned(String),
}

impl Default for PathRepr {
    fn default() -> Self {
        Self::Owned(String::new())
    }
}

impl RequestPath {
    /// The path.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            PathRepr::Uri(uri) => uri.path(),
            PathRepr::Owned(path) => path,
        }
    }
}

impl From<&http::Uri> for RequestPath {
    /// The URI's path ([`Uri::path`](http::Uri::path)), sharing its bytes.
    fn from(uri: &http::Uri) -> Self {
        match uri.path_and_query() {
            // The URI's path is its path-and-query's unless the URI has no path at all.
            Some(shared) if std::ptr::eq(shared.path(), uri.path()) => {
                Self(PathRepr::Uri(shared.clone()))
            }
            _ => Self(PathRepr::Owned(uri.path().to_owned())),
        }
    }
}

impl From<String> for RequestPath {
    fn from(path: String) -> Self {
        Self(PathRepr::Owned(path))
    }
}

impl From<&str> for RequestPath {
    fn from(path: &str) -> Self {
        Self(PathRepr::Owned(path.to_owned()))
    }
}

impl std::ops::Deref for RequestPath {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for RequestPath {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for RequestPath {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for RequestPath {}

impl PartialEq<str> for RequestPath {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for RequestPath {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for RequestPath {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for RequestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for RequestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RequestPath {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The path parameters of the matched route, in template order, percent-decoded. Serializes
/// as an object (`{"id": "42"}`).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PathParams {
    /// Every name and value, one after the other: inline up to 32 bytes (most routes' `id`s
    /// and names), in one allocation beyond. UTF-8, and so is every range `ends` delimits:
    /// only [`push`](Self::push) writes it, whole `str`s at a time.
    text: SmallVec<[u8; 32]>,
    /// Where each parameter's name and value end in `text`.
    ends: SmallVec<[(usize, usize); 2]>,
}

impl PathParams {
    /// No parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the parameter `name` with its decoded `value`.
    pub fn push(&mut self, name: impl AsRef<str>, value: impl AsRef<str>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        self.text.extend_from_slice(name.as_bytes());
        let name_end = self.text.len();
        self.text.extend_from_slice(value.as_bytes());
        self.ends.push((name_end, self.text.len()));
    }

    /// The decoded value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// The parameters, in template order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &str)> {
        self.ends
            .iter()
            .enumerate()
            .map(|(i, &(name_end, value_end))| {
                let start = if i == 0 { 0 } else { self.ends[i - 1].1 };
                (
                    self.text_at(start..name_end),
                    self.text_at(name_end..value_end),
                )
            })
    }

    /// The name or value pushed as `range` of `text`: UTF-8 by construction, so the check
    /// cannot fail (and costs a few instructions on such short text).
    fn text_at(&self, range: std::ops::Range<usize>) -> &str {
        std::str::from_utf8(&self.text[range]).unwrap_or_default()
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }
}

impl fmt::Debug for PathParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for PathParams {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

fn method_name<S: serde::Serializer>(method: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// What a binding extracts from an inbound request and hands to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRequest {
    /// The upstream chain propagated by the peer, without the peer itself; may be empty. The
    /// HTTP binding fills it from the verified chain header, every link `verified`.
    pub chain: Chain,
    /// The immediate peer. [`Server::enforce`](crate::Server::enforce) appends it to `chain`;
    /// the binding sets it from the verified mTLS certificate.
    pub peer: Link,
    /// What is being accessed.
    pub resource: Resource,
    /// The operation.
    pub action: Action,
    /// The request line, for policies that look at the concrete path.
    pub request: RequestLine,
    /// The claims of the request's Transaction Token, verified: the HTTP binding fills it
    /// from the `Txn-Token` header; a trust-boundary service from
    /// [`Server::verify_txn_token`](crate::Server::verify_txn_token). The policy reads it as
    /// `input.txn`.
    pub txn: Option<std::sync::Arc<TxnClaims>>,
}

impl InboundRequest {
    /// A request from `peer` for `action` on `resource`, with no upstream chain.
    pub fn new(peer: Link, resource: Resource, action: Action) -> Self {
        Self {
            chain: Chain::new(),
            peer,
            resource,
            action,
            request: RequestLine::default(),
            txn: None,
        }
    }

    /// The same request with the verified Transaction Token claims `txn`.
    pub fn with_txn(mut self, txn: TxnClaims) -> Self {
        self.txn = Some(std::sync::Arc::new(txn));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_params_keep_template_order_and_find_by_name() {
        let mut params = PathParams::new();
        assert!(params.is_empty());
        assert_eq!(params.get("id"), None);
        params.push("id", "a/b");
        params.push("", "");
        params.push("owner", "ünïcode");
        assert_eq!(params.len(), 3);
        assert_eq!(
            params.iter().collect::<Vec<_>>(),
            [("id", "a/b"), ("", ""), ("owner", "ünïcode")]
        );
        // Past the inline room: the same parameters, and the next one after them.
        let mut long = params.clone();
        long.push("account", "0f8fad5b-d9cb-469f-a165-70867728950e");
        long.push("x", "y");
        assert_eq!(
            long.iter().collect::<Vec<_>>(),
            [
                ("id", "a/b"),
                ("", ""),
                ("owner", "ünïcode"),
                ("account", "0f8fad5b-d9cb-469f-a165-70867728950e"),
                ("x", "y")
            ]
        );
        assert_eq!(params.get("id"), Some("a/b"));
        assert_eq!(params.get("owner"), Some("ünïcode"));
        assert_eq!(params.get(""), Some(""));
        assert_eq!(params.get("i"), None);
        assert_eq!(
            format!("{params:?}"),
            r#"{"id": "a/b", "": "", "owner": "ünïcode"}"#
        );
        assert_eq!(
            serde_json::to_string(&params).unwrap(),
            r#"{"id":"a/b","":"","owner":"ünïcode"}"#
        );
    }

    #[test]
    fn a_request_path_is_the_uris_path_shared_or_owned() {
        for (uri, path) in [
            ("/accounts/a%2Fb?x=1", "/accounts/a%2Fb"),
            ("/", "/"),
            ("/?q", "/"),
            ("*", "*"),
            ("https://example.org", "/"),
            ("https://example.org/a/b?c", "/a/b"),
            ("example.org:443", ""),
        ] {
            let uri: http::Uri = uri.parse().unwrap();
            let shared = RequestPath::from(&uri);
            assert_eq!(shared.as_str(), uri.path(), "{uri}");
            assert_eq!(shared, path);
            assert_eq!(shared, RequestPath::from(path));
            assert_eq!(shared, RequestPath::from(path.to_owned()));
            assert_eq!(serde_json::to_string(&shared).unwrap(), format!("{path:?}"));
            assert_eq!(format!("{shared:?}"), format!("{path:?}"));
        }
        assert_eq!(RequestPath::default(), "");
    }

    #[test]
    fn path_params_are_equal_when_their_pairs_are() {
        let mut a = PathParams::new();
        a.push("ab", "c");
        let mut b = PathParams::new();
        b.push("a", "bc");
        assert_ne!(a, b, "the split between name and value matters");
        let mut c = PathParams::new();
        c.push("ab", "c");
        assert_eq!(a, c);
    }
}
