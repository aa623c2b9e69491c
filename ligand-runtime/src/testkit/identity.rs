use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::ProviderError;
use crate::identity::{
    FetchWitRequest, FetchWitResponse, WorkloadIdentity, X509Context, X509ContextUpdate,
};
use crate::testkit::WitIssuer;

/// A [`WorkloadIdentity`] serving a context held in memory, with a watch that delivers
/// [`FakeIdentity::rotate`] and [`FakeIdentity::fail`] to the framework.
#[derive(Debug)]
pub struct FakeIdentity {
    context: Mutex<Result<X509Context, String>>,
    updates: watch::Sender<X509ContextUpdate>,
    watch_supported: bool,
    wits: Option<Arc<WitIssuer>>,
}

impl FakeIdentity {
    /// An identity serving `context`.
    pub fn new(context: X509Context) -> Self {
        let (updates, _) = watch::channel(Ok(context.clone()));
        Self {
            context: Mutex::new(Ok(context)),
            updates,
            watch_supported: true,
            wits: None,
        }
    }

    /// An identity whose fetch fails with `message`.
    pub fn unavailable(message: &str) -> Self {
        let (updates, _) = watch::channel(Err(message.to_owned()));
        Self {
            context: Mutex::new(Err(message.to_owned())),
            updates,
            watch_supported: true,
            wits: None,
        }
    }

    /// Answers `NotSupported` to watches, so the framework polls instead.
    pub fn without_watch(mut self) -> Self {
        self.watch_supported = false;
        self
    }

    /// Issues WITs from `issuer` for the SVID's SPIFFE ID, binding the key the workload
    /// offers (without it, `fetch_wit` answers `NotSupported`).
    pub fn with_wits(mut self, issuer: Arc<WitIssuer>) -> Self {
        self.wits = Some(issuer);
        self
    }

    /// Replaces the context and pushes it to watchers.
    pub fn rotate(&self, context: X509Context) {
        *self.context.lock().unwrap_or_else(|e| e.into_inner()) = Ok(context.clone());
        let _previous = self.updates.send_replace(Ok(context));
    }

    /// Makes fetches fail and pushes the error to watchers.
    pub fn fail(&self, message: &str) {
        *self.context.lock().unwrap_or_else(|e| e.into_inner()) = Err(message.to_owned());
        let _previous = self.updates.send_replace(Err(message.to_owned()));
    }
}

#[async_trait]
impl WorkloadIdentity for FakeIdentity {
    async fn fetch_x509_context(&self) -> Result<X509Context, ProviderError> {
        self.context
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map_err(|m| ProviderError::backend("fetching X.509 context", m))
    }

    async fn watch_x509_context(
        &self,
    ) -> Result<watch::Receiver<X509ContextUpdate>, ProviderError> {
        if self.watch_supported {
            Ok(self.updates.subscribe())
        } else {
            Err(ProviderError::NotSupported)
        }
    }

    async fn fetch_wit(
        &self,
        request: &FetchWitRequest,
    ) -> Result<FetchWitResponse, ProviderError> {
        let Some(issuer) = &self.wits else {
            return Err(ProviderError::NotSupported);
        };
        let context = self.fetch_x509_context().await?;
        let svid = context
            .svids
            .first()
            .ok_or_else(|| ProviderError::Invalid("no SVID".into()))?;
        Ok(issuer.fetch(&svid.spiffe_id.to_string(), request))
    }
}
