//! The SPIFFE Workload API over the attested caller: every RPC looks up the registration
//! entries the caller's kernel-verified selectors match, and denies when none does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::attest::PeerInfo;
use crate::ca::LocalCa;
use crate::config::RegistrationEntry;
use crate::jwt::JwtAuthority;
use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use crate::proto::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    SECURITY_HEADER, ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest,
    X509BundlesResponse, X509svid, X509svidRequest, X509svidResponse,
};

/// Rejects a request without `workload.spiffe.io: true`, as the Workload API specification
/// requires (InvalidArgument).
#[allow(
    clippy::result_large_err,
    reason = "the tonic interceptor signature returns Status by value"
)]
pub(crate) fn require_security_header(request: Request<()>) -> Result<Request<()>, Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value == "true" => Ok(request),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The Workload API service.
pub(crate) struct WorkloadApi {
    pub(crate) ca: Arc<LocalCa>,
    pub(crate) jwt: Arc<JwtAuthority>,
    pub(crate) entries: Arc<Vec<RegistrationEntry>>,
    /// Ends every open stream when the agent shuts down.
    pub(crate) stop: CancellationToken,
}

type ResponseStream<T> = ReceiverStream<Result<T, Status>>;

// === impl WorkloadApi ===

impl WorkloadApi {
    /// The entries the attested caller of `request` matches; PermissionDenied when it was not
    /// attested or matches none.
    #[allow(
        clippy::result_large_err,
        reason = "tonic handlers return Status by value"
    )]
    fn entries_for<T>(
        &self,
        request: &Request<T>,
    ) -> Result<(Vec<RegistrationEntry>, PeerInfo), Status> {
        let Some(peer) = request.extensions().get::<PeerInfo>() else {
            tracing::error!("request without attested peer credentials; denied");
            return Err(Status::permission_denied("no identity issued"));
        };
        let selectors = peer.selectors();
        let entries: Vec<_> = self
            .entries
            .iter()
            .filter(|e| e.matches(&selectors))
            .cloned()
            .collect();
        if entries.is_empty() {
            tracing::warn!(pid = peer.pid, uid = peer.uid, gid = peer.gid, exe = ?peer.exe, "caller matches no registration entry; denied");
            return Err(Status::permission_denied("no identity issued"));
        }
        tracing::debug!(
            pid = peer.pid,
            uid = peer.uid,
            entries = entries.len(),
            "caller attested"
        );
        Ok((entries, peer.clone()))
    }

    fn bundle(&self) -> Vec<u8> {
        self.ca.root().to_vec()
    }

    /// Issues one SVID per entry; returns the response and when to rotate (half the
    /// shortest lifetime).
    #[allow(
        clippy::result_large_err,
        reason = "tonic handlers return Status by value"
    )]
    fn x509_response(
        ca: &LocalCa,
        entries: &[RegistrationEntry],
    ) -> Result<(X509svidResponse, Duration), Status> {
        let mut svids = Vec::with_capacity(entries.len());
        let mut next = Duration::MAX;
        for entry in entries {
            let issued = ca.issue(&entry.spiffe_id, entry.x509_ttl).map_err(|e| {
                tracing::error!(error = %e, spiffe_id = %entry.spiffe_id, "X.509-SVID issuance failed");
                Status::unavailable("X.509-SVID issuance failed")
            })?;
            let lifetime = issued
                .not_after
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            next = next.min(lifetime / 2);
            tracing::info!(spiffe_id = %entry.spiffe_id, not_after = ?issued.not_after, "X.509-SVID issued");
            svids.push(X509svid {
                spiffe_id: entry.spiffe_id.to_string(),
                x509_svid: issued
                    .svid
                    .cert_chain
                    .iter()
                    .flat_map(|c| c.iter().copied())
                    .collect(),
                x509_svid_key: issued.svid.private_key.secret_der().to_vec(),
                bundle: ca.root().to_vec(),
                hint: String::new(),
            });
        }
        Ok((
            X509svidResponse {
                svids,
                crl: Vec::new(),
                federated_bundles: HashMap::new(),
            },
            next.max(Duration::from_millis(100)),
        ))
    }
}

#[tonic::async_trait]
impl SpiffeWorkloadApi for WorkloadApi {
    type FetchX509SVIDStream = ResponseStream<X509svidResponse>;
    type FetchX509BundlesStream = ResponseStream<X509BundlesResponse>;
    type FetchJWTBundlesStream = ResponseStream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        let (entries, peer) = self.entries_for(&request)?;
        let first = Self::x509_response(&self.ca, &entries)?;
        let (tx, rx) = mpsc::channel(2);
        let ca = self.ca.clone();
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut item = Ok(first);
            loop {
                let (response, next) = match item {
                    Ok(ok) => ok,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                if let Err(status) = recheck(&peer).await {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(next) => {}
                }
                item = Self::x509_response(&ca, &entries);
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        self.entries_for(&request)?;
        let response = X509BundlesResponse {
            crl: Vec::new(),
            bundles: HashMap::from([(self.ca.trust_domain().id_string(), self.bundle())]),
        };
        let (tx, rx) = mpsc::channel(1);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            if tx.send(Ok(response)).await.is_ok() {
                // The root does not change while the agent runs: hold the stream open.
                tokio::select! {
                    () = tx.closed() => {}
                    () = stop.cancelled() => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        let (entries, peer) = self.entries_for(&request)?;
        let body = request.into_inner();
        if body.audience.is_empty() || body.audience.iter().any(String::is_empty) {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        let selected: Vec<_> = entries
            .iter()
            .filter(|e| body.spiffe_id.is_empty() || e.spiffe_id.to_string() == body.spiffe_id)
            .collect();
        if selected.is_empty() {
            return Err(Status::permission_denied("no identity issued"));
        }
        let mut svids = Vec::with_capacity(selected.len());
        for entry in selected {
            let svid = self
                .jwt
                .issue_jwt_svid(&entry.spiffe_id, &body.audience, entry.jwt_ttl)
                .map_err(|e| {
                    tracing::error!(error = %e, "JWT-SVID issuance failed");
                    Status::unavailable("JWT-SVID issuance failed")
                })?;
            tracing::info!(spiffe_id = %entry.spiffe_id, audience = ?body.audience, "JWT-SVID issued");
            svids.push(Jwtsvid {
                spiffe_id: entry.spiffe_id.to_string(),
                svid: svid.token,
                hint: String::new(),
            });
        }
        recheck(&peer).await?;
        Ok(Response::new(JwtsvidResponse { svids }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        self.entries_for(&request)?;
        let (tx, rx) = mpsc::channel(2);
        let jwt = self.jwt.clone();
        let stop = self.stop.clone();
        let mut changes = jwt.subscribe();
        tokio::spawn(async move {
            loop {
                changes.borrow_and_update();
                let response = JwtBundlesResponse {
                    bundles: HashMap::from([(jwt.trust_domain().id_string(), jwt.spiffe_bundle())]),
                };
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
                tokio::select! {
                    () = tx.closed() => return,
                    () = stop.cancelled() => return,
                    changed = changes.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        self.entries_for(&request)?;
        let body = request.into_inner();
        if body.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if body.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        let validated = self
            .jwt
            .validate_jwt_svid(&body.svid, &body.audience)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id: validated.spiffe_id.to_string(),
            claims: Some(to_struct(validated.claims)),
        }))
    }
}

/// Refuses to send an SVID to a caller that is no longer the process that was attested (see
/// [`PeerInfo::recheck`]).
#[allow(
    clippy::result_large_err,
    reason = "tonic handlers return Status by value"
)]
async fn recheck(peer: &PeerInfo) -> Result<(), Status> {
    peer.recheck().await.map_err(|error| {
        tracing::warn!(%error, "caller changed after attestation; SVID withheld");
        Status::permission_denied("no identity issued")
    })
}

// === claims as protobuf Struct ===

fn to_struct(map: Map<String, Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map
            .into_iter()
            .map(|(k, v)| (k, to_value(v)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn to_value(value: Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(values) => Kind::ListValue(prost_types::ListValue {
            values: values.into_iter().map(to_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
