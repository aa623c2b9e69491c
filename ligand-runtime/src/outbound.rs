//! Outbound calls: the clients `#[ligand::client]` generates, and the one transport they call
//! through (registry → pooled mTLS connection verified against the expected SPIFFE ID → signed
//! chain → per-call timeout).

#[allow(
    dead_code,
    reason = "the classification of responses waits for the transport, written in parallel"
)]
mod client;

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::Method;

pub use self::client::{CallBuilder, CallError, Client};

/// A handle for calls to one service, bound to the chain of the context it came from. Generated
/// clients hold one; cloning copies pointers.
#[derive(Clone)]
pub struct Caller {
    service: Arc<str>,
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl Caller {
    pub(crate) fn new(service: &'static str) -> Self {
        Self {
            service: service.into(),
        }
    }

    /// The SPIFFE ID this handle calls.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Starts a call: `method` on the path `template` (`{param}` segments bound with
    /// [`CallBuilder::param`]).
    pub fn request(&self, method: Method, template: &'static str) -> CallBuilder<'_> {
        CallBuilder::new(self, method, template)
    }

    pub(crate) async fn send(
        &self,
        method: Method,
        path_and_query: String,
        body: Option<Bytes>,
    ) -> Result<Bytes, CallError> {
        let _ = (method, path_and_query, body);
        Err(CallError::Refused("outbound transport not yet wired"))
    }
}
