//! The Workload API over a real unix socket, driven by the `spiffe` crate's client (an
//! independent SPIFFE implementation) and by a raw gRPC client.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{Fixture, WORKLOAD_ID, entry, uid, with_header};
use futures_util::StreamExt;
use ligand_identity_agent::Selector;
use ligand_identity_agent::proto::{JwtsvidRequest, X509BundlesRequest, X509svidRequest};
use ligand_runtime::{TrustBundles, TrustDomain};
use rustls_pki_types::{CertificateDer, UnixTime};
use tonic::Code;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Checks the leaf against the X.509-SVID specification and its chain against the bundle.
fn assert_valid_svid(leaf: &[u8], root: &[u8]) {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(leaf).unwrap();
    let mut uris = Vec::new();
    let (mut ku_ok, mut eku_ok, mut ca) = (false, false, true);
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                uris.extend(san.general_names.iter().filter_map(|n| match n {
                    GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                }));
            }
            ParsedExtension::BasicConstraints(bc) => ca = bc.ca,
            ParsedExtension::KeyUsage(ku) => {
                ku_ok = ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign();
            }
            ParsedExtension::ExtendedKeyUsage(eku) => eku_ok = eku.server_auth && eku.client_auth,
            _ => {}
        }
    }
    assert_eq!(uris, vec![WORKLOAD_ID.to_owned()], "exactly one URI SAN");
    assert!(!ca, "leaf is not a CA");
    assert!(ku_ok, "digitalSignature only");
    assert!(eku_ok, "serverAuth and clientAuth");
    let bundles = TrustBundles::new().with(
        TrustDomain::new("example.org").unwrap(),
        vec![CertificateDer::from(root.to_vec())],
    );
    let id = ligand_runtime::tls::verify_svid(
        &CertificateDer::from(leaf.to_vec()),
        &[],
        &bundles,
        UnixTime::now(),
    )
    .unwrap();
    assert_eq!(id.to_string(), WORKLOAD_ID);
}

#[tokio::test]
async fn spiffe_client_fetches_svid_and_bundle() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(3600)).await;
    let client = fixture.spiffe_client().await;

    let svid = client.fetch_x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id().to_string(), WORKLOAD_ID);
    let bundles = client.fetch_x509_bundles().await.unwrap();
    let td = spiffe::TrustDomain::new("example.org").unwrap();
    let root = bundles.get(&td).expect("own bundle").authorities()[0]
        .as_bytes()
        .to_vec();
    assert_eq!(root.as_slice(), fixture.agent.ca().root().as_ref());
    assert_valid_svid(svid.leaf().as_bytes(), &root);

    let context = client.fetch_x509_context().await.unwrap();
    assert_eq!(context.svids().len(), 1);
    assert!(context.bundle_set().get(&td).is_some());
}

#[tokio::test]
async fn default_lifetime_is_one_hour() {
    let fixture = Fixture::start(vec![entry(vec![Selector::Uid(uid())])]).await;
    let svid = fixture
        .spiffe_client()
        .await
        .fetch_x509_svid()
        .await
        .unwrap();
    let (_, cert) =
        x509_parser::certificate::X509Certificate::from_der(svid.leaf().as_bytes()).unwrap();
    let remaining = cert.validity().not_after.timestamp() - time_now();
    assert!((3590..=3600).contains(&remaining), "{remaining}");
}

fn time_now() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    )
    .unwrap()
}

#[tokio::test]
async fn stream_delivers_rotated_svids_at_half_life() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(2)).await;
    let client = fixture.spiffe_client().await;
    let mut stream = client.stream_x509_svids().await.unwrap();
    let started = tokio::time::Instant::now();
    let mut serials = Vec::new();
    // Three SVIDs with a 2 s lifetime arrive about 1 s apart; 6 s bounds a stalled stream.
    while serials.len() < 3 {
        let svid = tokio::time::timeout(Duration::from_secs(6), stream.next())
            .await
            .expect("rotation within the bound")
            .expect("stream open")
            .unwrap();
        assert_eq!(svid.spiffe_id().to_string(), WORKLOAD_ID);
        serials.push(svid.leaf().as_bytes().to_vec());
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1800),
        "rotated too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "rotated too late: {elapsed:?}"
    );
    serials.dedup();
    assert_eq!(serials.len(), 3, "each push is a new certificate");
}

#[tokio::test]
async fn unregistered_uid_is_denied() {
    let fixture = Fixture::start(vec![entry(vec![Selector::Uid(uid() + 1)])]).await;
    let client = fixture.spiffe_client().await;
    let error = client.fetch_x509_svid().await.unwrap_err();
    // The spiffe crate maps PermissionDenied to its "no identity issued" error.
    assert!(
        matches!(error, spiffe::WorkloadApiError::NoIdentityIssued),
        "{error:?}"
    );

    let mut raw = fixture.raw_client().await;
    for status in [
        raw.fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .err(),
        raw.fetch_x509_bundles(with_header(X509BundlesRequest {}))
            .await
            .err(),
        raw.fetch_jwtsvid(with_header(JwtsvidRequest {
            audience: vec!["a".into()],
            spiffe_id: String::new(),
        }))
        .await
        .err(),
    ] {
        assert_eq!(status.expect("denied").code(), Code::PermissionDenied);
    }
}

#[tokio::test]
async fn every_selector_must_match() {
    let exe = std::env::current_exe().unwrap();
    let both = Fixture::start(vec![entry(vec![Selector::Uid(uid()), Selector::Path(exe)])]).await;
    assert!(both.spiffe_client().await.fetch_x509_svid().await.is_ok());

    let wrong_path = Fixture::start(vec![entry(vec![
        Selector::Uid(uid()),
        Selector::Path("/usr/bin/not-this-test".into()),
    ])])
    .await;
    let status = wrong_path
        .raw_client()
        .await
        .fetch_x509svid(with_header(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn request_without_security_header_is_rejected() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(3600)).await;
    let mut raw = fixture.raw_client().await;
    let status = raw
        .fetch_x509svid(tonic::Request::new(X509svidRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut wrong = tonic::Request::new(X509svidRequest {});
    wrong
        .metadata_mut()
        .insert("workload.spiffe.io", "yes".parse().unwrap());
    assert_eq!(
        raw.fetch_x509svid(wrong).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // The same client with the header is served.
    assert!(
        raw.fetch_x509svid(with_header(X509svidRequest {}))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn bundles_are_keyed_by_trust_domain_id() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(3600)).await;
    let mut raw = fixture.raw_client().await;
    let mut stream = raw
        .fetch_x509_bundles(with_header(X509BundlesRequest {}))
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(
        first.bundles.get("spiffe://example.org").map(Vec::as_slice),
        Some(fixture.agent.ca().root().as_ref())
    );
}
