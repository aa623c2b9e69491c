//! gRPC C-core clients (grpcio ≥ 1.57, so py-spiffe) send the percent-encoded socket path as
//! `:authority`. The agent serves them, as SPIRE does: driven here by h2's frame codec over the
//! real socket, sending exactly those bytes.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::raw::{RawClient, c_core_authority};
use common::{Fixture, WORKLOAD_ID};
use ligand_runtime::{TrustBundles, TrustDomain};
use rustls_pki_types::{CertificateDer, UnixTime};
use tokio::net::UnixStream;

async fn connect(fixture: &Fixture) -> RawClient<UnixStream> {
    RawClient::handshake(
        UnixStream::connect(fixture.agent.socket_path())
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn percent_encoded_socket_path_authority_is_served() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(3600)).await;
    let authority = c_core_authority(fixture.agent.socket_path());
    assert!(authority.contains("%2F"), "{authority}");
    let mut client = connect(&fixture).await;
    // Two requests on one connection: h2's encoder indexes the headers of the first, so the
    // second is mostly references to the connection's HPACK dynamic table.
    for stream in [1, 3] {
        let response = client
            .fetch_x509_svid(stream, Some(&authority))
            .await
            .unwrap();
        let svid = &response.svids[0];
        assert_eq!(svid.spiffe_id, WORKLOAD_ID);
        let bundles = TrustBundles::new().with(
            TrustDomain::new("example.org").unwrap(),
            vec![CertificateDer::from(svid.bundle.clone())],
        );
        // x509_svid is the chain's DER certificates back to back; the leaf comes first.
        let (after_leaf, _) = x509_parser::parse_x509_certificate(&svid.x509_svid).unwrap();
        let leaf_len = svid.x509_svid.len() - after_leaf.len();
        let verified = ligand_runtime::tls::verify_svid(
            &CertificateDer::from(svid.x509_svid[..leaf_len].to_vec()),
            &[],
            &bundles,
            UnixTime::now(),
        )
        .unwrap();
        assert_eq!(verified.to_string(), WORKLOAD_ID);
    }
}

#[tokio::test]
async fn other_authorities_are_served_too() {
    let fixture = Fixture::for_this_uid(Duration::from_secs(3600)).await;
    let mut client = connect(&fixture).await;
    // grpc-go's "localhost", no authority at all, and a raw path (grpc-java, grpcurl).
    let path = fixture.agent.socket_path().to_str().unwrap().to_owned();
    for (stream, authority) in [(1, Some("localhost")), (3, None), (5, Some(path.as_str()))] {
        let response = client.fetch_x509_svid(stream, authority).await;
        assert_eq!(
            response.unwrap().svids[0].spiffe_id,
            WORKLOAD_ID,
            "{authority:?}"
        );
    }
}

#[tokio::test]
async fn security_header_and_attestation_still_apply() {
    let fixture = Fixture::start(vec![common::entry(vec![
        ligand_identity_agent::Selector::Uid(common::uid() + 1),
    ])])
    .await;
    let authority = c_core_authority(fixture.agent.socket_path());
    let mut client = connect(&fixture).await;
    let error = client
        .fetch_x509_svid(1, Some(&authority))
        .await
        .unwrap_err();
    // PermissionDenied is gRPC status 7.
    assert!(error.contains("grpc-status \"7\""), "{error}");
}
