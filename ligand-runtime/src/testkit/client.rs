use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use spiffe::SpiffeId;

use crate::dial::{ClientAuth, Dialer, ServerAuth};
use crate::error::{BoxError, InitError};
use crate::identity::X509Context;
use crate::tls::{IdentityState, PeerVerifier, SpiffeServerVerifier};

/// An mTLS HTTP/1.1 client holding its own SVID: another workload, for tests and examples.
/// It dials through the framework's [`Dialer`], as a service's outbound calls do.
#[derive(Debug, Clone)]
pub struct PeerClient {
    identity: Arc<IdentityState>,
    dialer: Dialer,
}

/// One response.
#[derive(Debug, Clone)]
pub struct PeerResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The response headers.
    pub headers: HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl PeerResponse {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl PeerClient {
    /// A client presenting the SVID of `context`, accepting only a server presenting
    /// `expect` (or any SVID of a trusted domain when `None`).
    pub fn new(context: &X509Context, expect: Option<&SpiffeId>) -> Result<Self, InitError> {
        let identity = Arc::new(IdentityState::new(context, None)?);
        let server = match expect {
            Some(id) => ServerAuth::spiffe(&identity, id.clone()),
            // A test that does not name the server accepts any SVID of a trusted domain, as
            // an inbound peer is accepted: the dialer itself offers no such mode.
            None => ServerAuth::testkit(Arc::new(SpiffeServerVerifier::new(
                identity.clone(),
                PeerVerifier::AnyTrusted,
            ))),
        };
        let dialer = Dialer::builder(server, ClientAuth::svid(&identity))
            .http1_only()
            .build()
            .map_err(|e| InitError::Config(e.to_string()))?;
        Ok(Self { identity, dialer })
    }

    /// A client presenting NO certificate, trusting the bundles of `context` and accepting only
    /// a server presenting `expect`: an external caller of a gateway, which authenticates by
    /// access token. (The SVID of `context` is not presented.)
    pub fn without_certificate(
        context: &X509Context,
        expect: &SpiffeId,
    ) -> Result<Self, InitError> {
        let identity = Arc::new(IdentityState::new(context, None)?);
        let dialer = Dialer::builder(
            ServerAuth::spiffe(&identity, expect.clone()),
            ClientAuth::none(),
        )
        .http1_only()
        .build()
        .map_err(|e| InitError::Config(e.to_string()))?;
        Ok(Self { identity, dialer })
    }

    /// The client's own SPIFFE ID.
    pub fn spiffe_id(&self) -> SpiffeId {
        self.identity.spiffe_id()
    }

    /// The client's live identity (its SVID and trust store).
    pub fn identity(&self) -> &Arc<IdentityState> {
        &self.identity
    }

    /// The chain header this client sends to `audience` when the request came through
    /// `upstream` in order (most distal first) and then this client, each hop signing its token
    /// now. Send it as [`CHAIN_HEADER`](crate::CHAIN_HEADER).
    ///
    /// # Errors
    /// As [`signed_chain`](super::signed_chain).
    pub fn chain_header(
        &self,
        upstream: &[&PeerClient],
        audience: &SpiffeId,
    ) -> Result<String, BoxError> {
        let hops: Vec<&IdentityState> = upstream
            .iter()
            .map(|c| &*c.identity)
            .chain([&*self.identity])
            .collect();
        let header = super::signed_chain(&hops, audience, std::time::SystemTime::now())?;
        Ok(header.to_str()?.to_owned())
    }

    /// Opens one keep-alive connection to `addr`.
    pub async fn connect(&self, addr: SocketAddr) -> Result<PeerConnection, BoxError> {
        let uri = Uri::try_from(format!("https://{addr}"))?;
        let tls = self.dialer.connect(&uri).await?;
        let server_certificate = tls
            .peer_certificates()
            .first()
            .cloned()
            .ok_or("server presented no certificate")?;
        let (sender, connection) = http1::handshake(tls).await?;
        let task = tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(PeerConnection {
            sender,
            server_certificate,
            task,
        })
    }

    /// `GET path` on a fresh connection.
    pub async fn get(&self, addr: SocketAddr, path: &str) -> Result<PeerResponse, BoxError> {
        self.connect(addr)
            .await?
            .send(Method::GET, path, &[], Vec::new())
            .await
    }

    /// `POST path` with `body` on a fresh connection.
    pub async fn post(
        &self,
        addr: SocketAddr,
        path: &str,
        body: Vec<u8>,
    ) -> Result<PeerResponse, BoxError> {
        self.send(addr, Method::POST, path, &[], body).await
    }

    /// `method path` with `headers` and `body` on a fresh connection.
    pub async fn send(
        &self,
        addr: SocketAddr,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<PeerResponse, BoxError> {
        self.connect(addr)
            .await?
            .send(method, path, headers, body)
            .await
    }
}

/// One open mTLS connection.
#[derive(Debug)]
pub struct PeerConnection {
    sender: http1::SendRequest<Full<Bytes>>,
    server_certificate: CertificateDer<'static>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for PeerConnection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl PeerConnection {
    /// The certificate the server presented in this connection's handshake.
    pub fn server_certificate(&self) -> &CertificateDer<'static> {
        &self.server_certificate
    }

    /// Sends one request on this connection and reads the whole response.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<PeerResponse, BoxError> {
        self.sender.ready().await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "ligand.invalid");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .sender
            .send_request(request.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await?.to_bytes().to_vec();
        Ok(PeerResponse {
            status,
            headers,
            body,
        })
    }

    /// `GET path` on this connection.
    pub async fn get(&mut self, path: &str) -> Result<PeerResponse, BoxError> {
        self.send(Method::GET, path, &[], Vec::new()).await
    }

    /// Waits until the server has closed this connection.
    pub async fn closed(&mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Accepts any server certificate: lets a probe reach the server's own checks.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A probe's TLS client: the given protocol versions, `client_svid` presented (or no client
/// certificate), and NO server verification, so that tests reach the server's own refusals
/// (no certificate, TLS 1.2, an untrusted or malformed SVID). Never for real traffic.
pub fn probe_client_config(
    versions: &[&'static rustls::SupportedProtocolVersion],
    client_svid: Option<&crate::identity::X509Svid>,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)));
    let config = match client_svid {
        Some(svid) => {
            builder.with_client_auth_cert(svid.cert_chain.clone(), svid.private_key.clone_key())?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
