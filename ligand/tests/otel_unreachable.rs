//! OpenTelemetry export to a collector that is not there: requests are served as usual (the
//! export layer is process-wide, so this is a file of its own).
#![cfg(feature = "otel")]
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod otel_world;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_collector_never_fails_a_request() {
    // A loopback port with nothing listening.
    let collector = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    otel_world::export_to(collector);

    let (accounts, external) = otel_world::start().await;
    for _ in 0..3 {
        let response = otel_world::traced(
            &external,
            accounts,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .await;
        assert_eq!(response.status, 200, "{}", response.text());
    }
    // The flush gives up after its bound instead of hanging the close.
    tokio::task::spawn_blocking(|| ligand::shutdown_telemetry(Duration::from_secs(1)))
        .await
        .unwrap();
}
