//! The shadow policy off the request path: an engine that fails is counted as an error, and
//! one slower than the traffic has comparisons dropped (counted) while requests go on.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::time::Duration;

use ligand_runtime::testkit::{AllowList, FakeIdentity, PolicyFn, TestCa};
use ligand_runtime::{
    Action, Config, InboundRequest, Link, ProviderError, Resource, Server, init_trust_boundary,
};

const SERVICE: &str = "spiffe://example.org/service/accounts";
const CALLER: &str = "spiffe://example.org/service/gateway";

async fn start(shadow: PolicyFn) -> Server {
    let ca = TestCa::new("example.org");
    init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
            .policy(AllowList::new().allow("*", "*", "*"))
            .shadow_policy(shadow)
            .build(),
    )
    .await
    .unwrap()
}

fn request() -> InboundRequest {
    InboundRequest::new(
        Link::workload(CALLER),
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
    )
}

#[tokio::test]
async fn a_failing_shadow_policy_is_counted_as_an_error_and_changes_nothing() {
    let server = start(PolicyFn::new(|_| async {
        Err(ProviderError::Invalid("shadow broke".into()))
    }))
    .await;
    for _ in 0..3 {
        server.enforce(request()).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(20), async {
        while server.shadow_decisions().unwrap().error < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("three errors counted");
    let counts = server.shadow_decisions().unwrap();
    assert_eq!((counts.agree, counts.disagree), (0, 0));
    server.close().await;
}

#[tokio::test(start_paused = true)]
async fn a_shadow_policy_slower_than_the_traffic_has_comparisons_dropped_not_waited_for() {
    // Never answers: the worker waits out the policy timeout on each comparison.
    let server = start(PolicyFn::new(|_| std::future::pending())).await;
    for _ in 0..1100 {
        server.enforce(request()).await.unwrap();
    }
    let counts = server.shadow_decisions().unwrap();
    assert!(counts.dropped >= 1100 - 1025, "{counts:?}");
    assert_eq!(counts.agree + counts.disagree + counts.error, 0);
    server.close().await;
}
