//! The embedded development identity: the agent's CA and JWT authority used in-process as a
//! [`WorkloadIdentity`], for services that run without an agent or SPIRE.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ligand_runtime::{
    FetchWitRequest, FetchWitResponse, ProviderError, SpiffeId, TrustBundles, WorkloadIdentity,
    X509Context, X509ContextUpdate,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ca::LocalCa;
use crate::config::{DEFAULT_X509_TTL, MIN_TTL};
use crate::dev::DevDir;
use crate::error::AgentError;
use crate::jwt::{JwtAlgorithm, JwtAuthority, JwtError};

/// The default lifetime of an embedded WIT.
pub const DEFAULT_WIT_TTL: Duration = Duration::from_secs(300);

/// A [`WorkloadIdentity`] backed by an in-process CA: SVIDs rotate at half-life through the
/// watch, and WITs are signed by the in-process JWT authority.
///
/// This is a development identity. From [`EmbeddedIdentity::new`], the CA lives in this
/// process only, so no peer elsewhere trusts it (the in-process option of tests). From
/// [`EmbeddedIdentity::development`], the CA is the one persisted in the user's [`DevDir`],
/// shared by every development service of the user on the machine.
///
/// # Example
///
/// ```
/// use ligand_identity_agent::EmbeddedIdentity;
/// use ligand_runtime::{SpiffeId, WorkloadIdentity};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let identity = EmbeddedIdentity::new(SpiffeId::new("spiffe://example.org/service/hello")?)?;
/// let context = identity.fetch_x509_context().await?;
/// assert_eq!(context.svids[0].spiffe_id.to_string(), "spiffe://example.org/service/hello");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct EmbeddedIdentity {
    ca: Arc<LocalCa>,
    jwt: Arc<JwtAuthority>,
    spiffe_id: SpiffeId,
    x509_ttl: Duration,
    wit_ttl: Duration,
    loopback_names: bool,
    stop: CancellationToken,
}

impl EmbeddedIdentity {
    /// A development identity for `spiffe_id` from a fresh ephemeral CA. Logs a warning.
    pub fn new(spiffe_id: SpiffeId) -> Result<Self, AgentError> {
        let domain = spiffe_id.trust_domain().clone();
        let ca = Arc::new(LocalCa::ephemeral(domain.clone())?);
        let jwt = Arc::new(JwtAuthority::new(
            domain.clone(),
            domain.id_string(),
            JwtAlgorithm::Es256,
        )?);
        Ok(Self::from_parts(ca, jwt, spiffe_id))
    }

    /// A development identity for `spiffe_id` from the development CA of its trust domain in
    /// `dev` (created on first use, shared with every other service using the same folder),
    /// so that development services of one machine trust each other. Its SVIDs also name
    /// the loopback interface (see [`LocalCa::issue_for_loopback`]) so that callers such as
    /// curl can verify the service. Logs a warning.
    pub fn development(spiffe_id: SpiffeId, dev: &DevDir) -> Result<Self, AgentError> {
        let domain = spiffe_id.trust_domain().clone();
        let ca = Arc::new(dev.ca(&domain)?);
        let jwt = Arc::new(JwtAuthority::new(
            domain.clone(),
            domain.id_string(),
            JwtAlgorithm::Es256,
        )?);
        let mut identity = Self::from_parts(ca, jwt, spiffe_id);
        identity.loopback_names = true;
        Ok(identity)
    }

    /// A development identity for `spiffe_id` issued by `ca` and `jwt`, which several
    /// in-process services may share so that they trust each other. Logs a warning.
    pub fn from_parts(ca: Arc<LocalCa>, jwt: Arc<JwtAuthority>, spiffe_id: SpiffeId) -> Self {
        tracing::warn!(
            %spiffe_id,
            "USING AN EMBEDDED DEVELOPMENT IDENTITY: SVIDs come from a development CA (in-process, \
             or shared by this user's development services) that no production peer trusts. Configure a Workload API socket (SPIRE or ligand-agent) \
             for real deployments."
        );
        Self {
            ca,
            jwt,
            spiffe_id,
            x509_ttl: DEFAULT_X509_TTL,
            wit_ttl: DEFAULT_WIT_TTL,
            loopback_names: false,
            stop: CancellationToken::new(),
        }
    }

    /// Sets the X.509-SVID lifetime (at least one second).
    pub fn with_x509_ttl(mut self, ttl: Duration) -> Self {
        self.x509_ttl = ttl.max(MIN_TTL);
        self
    }

    /// Sets the WIT lifetime (at least one second).
    pub fn with_wit_ttl(mut self, ttl: Duration) -> Self {
        self.wit_ttl = ttl.max(MIN_TTL);
        self
    }

    /// The CA.
    pub fn ca(&self) -> &Arc<LocalCa> {
        &self.ca
    }

    /// The JWT authority.
    pub fn jwt(&self) -> &Arc<JwtAuthority> {
        &self.jwt
    }

    fn issue(
        ca: &LocalCa,
        id: &SpiffeId,
        ttl: Duration,
        loopback_names: bool,
    ) -> Result<X509Context, ProviderError> {
        let issued = if loopback_names {
            ca.issue_for_loopback(id, ttl)
        } else {
            ca.issue(id, ttl)
        };
        let issued =
            issued.map_err(|e| ProviderError::backend("issuing an embedded X.509-SVID", e))?;
        Ok(X509Context {
            svids: vec![issued.svid],
            bundles: TrustBundles::new().with(ca.trust_domain().clone(), vec![ca.root().clone()]),
        })
    }
}

#[async_trait]
impl WorkloadIdentity for EmbeddedIdentity {
    async fn fetch_x509_context(&self) -> Result<X509Context, ProviderError> {
        if self.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        Self::issue(
            &self.ca,
            &self.spiffe_id,
            self.x509_ttl,
            self.loopback_names,
        )
    }

    async fn watch_x509_context(
        &self,
    ) -> Result<watch::Receiver<X509ContextUpdate>, ProviderError> {
        let first = self.fetch_x509_context().await?;
        let (tx, rx) = watch::channel(Ok(first));
        let (ca, id, ttl, loopback_names, stop) = (
            self.ca.clone(),
            self.spiffe_id.clone(),
            self.x509_ttl,
            self.loopback_names,
            self.stop.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(ttl / 2) => {}
                }
                let update = Self::issue(&ca, &id, ttl, loopback_names).map_err(|e| e.to_string());
                if tx.send(update).is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    async fn fetch_wit(
        &self,
        request: &FetchWitRequest,
    ) -> Result<FetchWitResponse, ProviderError> {
        if self.stop.is_cancelled() {
            return Err(ProviderError::Closed);
        }
        self.jwt
            .issue_wit(&self.spiffe_id, request, self.wit_ttl)
            .map_err(|e| match e {
                JwtError::InvalidCnf(_) => ProviderError::Invalid(e.to_string()),
                other => ProviderError::backend("issuing a WIT", other),
            })
    }

    async fn close(&self) -> Result<(), ProviderError> {
        self.stop.cancel();
        Ok(())
    }
}
