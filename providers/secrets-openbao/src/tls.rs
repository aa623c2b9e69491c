//! TLS to OpenBao: the server is verified against the configured CA (OpenBao serves a normal
//! CA-issued certificate, not an SVID); for certificate auth the workload's current X.509-SVID
//! is presented as the client certificate.

use std::sync::Arc;

use ligand_runtime::ProviderContext;
use rustls::client::ResolvesClientCert;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::OpenBaoError;

/// The trust anchors in `ca_pem`; at least one is required.
pub(crate) fn root_store(ca_pem: &[u8]) -> Result<RootCertStore, OpenBaoError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| OpenBaoError::Tls(e.to_string().into()))?;
        roots
            .add(cert)
            .map_err(|e| OpenBaoError::Tls(Box::new(e)))?;
    }
    if roots.is_empty() {
        return Err(OpenBaoError::Config(
            "the CA PEM holds no certificate".into(),
        ));
    }
    Ok(roots)
}

/// The framework's resolver presenting the workload's current SVID (rotation included).
pub(crate) fn svid_resolver(context: &ProviderContext) -> Arc<dyn ResolvesClientCert> {
    context.client_cert_resolver()
}

/// TLS 1.3, the server verified against `ca_pem`, and `client` presented when given.
pub(crate) fn client_config(
    ca_pem: &[u8],
    client: Option<Arc<dyn ResolvesClientCert>>,
) -> Result<ClientConfig, OpenBaoError> {
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| OpenBaoError::Tls(Box::new(e)))?
            .with_root_certificates(root_store(ca_pem)?);
    Ok(match client {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    })
}
