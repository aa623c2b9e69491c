use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::error::ProviderError;
use crate::identity::{WorkloadIdentity, X509Context, X509ContextUpdate};

/// A [`WorkloadIdentity`] serving a context held in memory, with a watch that delivers
/// [`FakeIdentity::rotate`] and [`FakeIdentity::fail`] to the framework.
#[derive(Debug)]
pub struct FakeIdentity {
    context: Mutex<Result<X509Context, String>>,
    updates: watch::Sender<X509ContextUpdate>,
    watch_supported: bool,
}

impl FakeIdentity {
    /// An identity serving `context`.
    pub fn new(context: X509Context) -> Self {
        let (updates, _) = watch::channel(Ok(context.clone()));
        Self {
            context: Mutex::new(Ok(context)),
            updates,
            watch_supported: true,
        }
    }

    /// An identity whose fetch fails with `message`.
    pub fn unavailable(message: &str) -> Self {
        let (updates, _) = watch::channel(Err(message.to_owned()));
        Self {
            context: Mutex::new(Err(message.to_owned())),
            updates,
            watch_supported: true,
        }
    }

    /// Answers `NotSupported` to watches, so the framework polls instead.
    pub fn without_watch(mut self) -> Self {
        self.watch_supported = false;
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
}
