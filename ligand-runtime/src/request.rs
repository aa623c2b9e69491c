//! What a request asks for: the resource, the action and the metadata a binding extracts.

use std::borrow::Cow;

use serde::Serialize;

use crate::chain::{Chain, Link};

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
pub struct RequestLine {
    /// The HTTP method, as its name (`"GET"`).
    #[serde(serialize_with = "method_name")]
    pub method: http::Method,
    /// The concrete path (the resource carries the template).
    pub path: String,
}

impl RequestLine {
    /// The request line `method path`.
    pub fn new(method: http::Method, path: impl Into<String>) -> Self {
        Self {
            method,
            path: path.into(),
        }
    }
}

fn method_name<S: serde::Serializer>(method: &http::Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(method.as_str())
}

/// What a binding extracts from an inbound request and hands to the pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRequest {
    /// The upstream chain propagated by the peer, without the peer itself. Unverified beyond
    /// the peer; may be empty.
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
        }
    }
}
