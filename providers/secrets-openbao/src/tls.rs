//! TLS to OpenBao, through the framework's dialer: the server is verified by web PKI against
//! the configured CA and the address's host (OpenBao serves a normal CA-issued certificate, not
//! an SVID); for certificate auth the workload's current X.509-SVID is presented as the client
//! certificate.

use ligand_runtime::ProviderContext;
use ligand_runtime::dial::{ClientAuth, Dialer, ServerAuth};
use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{Auth, Settings};
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

/// The dialer to OpenBao: TLS 1.3, HTTP/1.1, the server verified against the configured CA
/// and host; the workload's current SVID (rotation included) presented for certificate auth,
/// no client certificate otherwise. Bounded by the request timeout and the response limit.
pub(crate) fn dialer(
    settings: &Settings,
    context: &ProviderContext,
) -> Result<Dialer, OpenBaoError> {
    let client = match settings.auth {
        Auth::Cert { .. } => ClientAuth::svid(context.identity()),
        _ => ClientAuth::none(),
    };
    Dialer::builder(ServerAuth::web_pki(root_store(&settings.ca_pem)?), client)
        .http1_only()
        .request_timeout(settings.request_timeout)
        .max_response_body(settings.max_response_bytes)
        .build()
        .map_err(|e| OpenBaoError::Tls(Box::new(e)))
}
