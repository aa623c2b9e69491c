//! The enforcement pipeline end to end over mTLS: denials, their JSON bodies and status codes,
//! audit events, and that a denied request never reaches the handler.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

mod common;

use std::time::Duration;

use common::{CALLER_ID, Fixture, SERVER_ID};
use http::Method;
use ligand_runtime::testkit::{AllowList, PeerClient, PolicyFn, ScriptedLimiter};
use ligand_runtime::{
    CHAIN_HEADER, Chain, EvalRequest, EvalResponse, Link, PolicyEngine, ProviderError, SpiffeId,
};

fn allow_hello() -> AllowList {
    AllowList::new()
        .allow(CALLER_ID, "GET", "/hello/{name}")
        .version("rev-7")
}

fn verified(workload: &str) -> Link {
    let mut link = Link::workload(workload);
    link.verified = true;
    link
}

fn assert_error_body(body: &serde_json::Value, code: &str) -> String {
    assert_eq!(body["error_code"], code, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{body}"
    );
    let request_id = body["request_id"].as_str().expect("request_id").to_owned();
    assert_eq!(request_id.len(), 32, "{body}");
    request_id
}

#[tokio::test]
async fn allowed_request_is_audited_with_template_resource_and_policy_version() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 200);
    let decisions = f.audit().await.decisions();
    assert_eq!(decisions.len(), 1);
    let d = &decisions[0];
    assert!(d.allowed);
    assert_eq!(d.input.resource.kind, "http.path");
    assert_eq!(d.input.resource.value, "/hello/{name}");
    assert_eq!(d.input.action.name, "GET");
    assert_eq!(d.policy_version.as_deref(), Some("rev-7"));
    assert_eq!(d.input.chain, Chain::from(vec![verified(CALLER_ID)]));
}

/// The allow list deciding inline, as an in-process engine such as regorus does, or only
/// after a real wait, as an engine that asks a backend does.
struct Decides {
    rules: AllowList,
    inline: bool,
}

#[async_trait::async_trait]
impl PolicyEngine for Decides {
    async fn evaluate(&self, request: &EvalRequest) -> Result<EvalResponse, ProviderError> {
        // Pending once: the request's admission is suspended here, and resumed.
        tokio::task::yield_now().await;
        self.rules.evaluate(request).await
    }

    fn evaluate_inline(
        &self,
        request: &EvalRequest,
    ) -> Option<Result<EvalResponse, ProviderError>> {
        use futures_util::FutureExt as _;
        self.inline
            .then(|| self.rules.evaluate(request).now_or_never())
            .flatten()
    }
}

#[tokio::test]
async fn a_route_admits_and_refuses_alike_whether_the_engine_decides_at_once_or_waits() {
    let mut answers = Vec::new();
    for inline in [true, false] {
        let f = Fixture::start(|c| {
            c.policy(Decides {
                rules: allow_hello(),
                inline,
            })
        })
        .await;
        let allowed = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
        assert_eq!(allowed.status, 200, "inline: {inline}");
        let denied = f
            .caller("spiffe://example.org/service/intruder")
            .get(f.addr, "/hello/ada")
            .await
            .unwrap();
        assert_eq!(denied.status, 403, "inline: {inline}");
        let request_id = assert_error_body(&denied.json().unwrap(), "POLICY_DENIED");
        assert_eq!(f.handler_calls(), 1, "inline: {inline}");
        let decisions = f.audit().await.decisions();
        let allowed_flags: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
        assert_eq!(allowed_flags, [true, false], "inline: {inline}");
        assert_eq!(decisions[1].request_id, *request_id);
        answers.push(allowed.text());
    }
    // The handler saw the same context (peer, chain) either way.
    assert!(answers[0].starts_with("hello ada|peer=spiffe://example.org/service/caller|"));
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn policy_denial_is_403_json_and_the_handler_never_runs() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    // Another workload of the same trust domain: authenticated, but not allowed.
    let response = f
        .caller("spiffe://example.org/service/intruder")
        .get(f.addr, "/hello/ada")
        .await
        .unwrap();
    assert_eq!(response.status, 403);
    assert_eq!(response.headers["content-type"], "application/json");
    let request_id = assert_error_body(&response.json().unwrap(), "POLICY_DENIED");
    assert_eq!(f.handler_calls(), 0);
    let decisions = f.audit().await.decisions();
    assert_eq!(decisions.len(), 1);
    assert!(!decisions[0].allowed);
    assert_eq!(decisions[0].request_id, *request_id);
    assert!(decisions[0].reason.as_deref().unwrap().contains("intruder"));
    // The reason is for the audit log only; the caller gets the fixed message.
    assert!(!response.text().contains("intruder"));
}

#[tokio::test]
async fn action_override_is_what_policy_sees() {
    let policy = AllowList::new().allow(CALLER_ID, "close", "/accounts/{id}");
    let f = Fixture::start(|c| c.policy(policy)).await;
    let caller = f.caller(CALLER_ID);
    let response = caller
        .send(f.addr, Method::DELETE, "/accounts/42", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "closed 42");
    assert_eq!(f.audit().await.decisions()[0].input.action.name, "close");
}

#[tokio::test]
async fn rate_limit_denial_is_429_with_retry_after() {
    let f = Fixture::start(|c| {
        c.policy(allow_hello())
            .rate_limiter(ScriptedLimiter::budget(2, Duration::from_millis(1500)))
    })
    .await;
    let caller = f.caller(CALLER_ID);
    for _ in 0..2 {
        assert_eq!(caller.get(f.addr, "/hello/ada").await.unwrap().status, 200);
    }
    let response = caller.get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 429);
    assert_eq!(response.headers["retry-after"], "2");
    assert_error_body(&response.json().unwrap(), "RATE_LIMITED");
    assert_eq!(f.handler_calls(), 2);
    // Rate limiting runs before policy: the denied request produced no decision.
    assert_eq!(f.audit().await.decisions().len(), 2);
    let limits = f.audit().await.rate_limits();
    assert_eq!(limits.len(), 3);
    assert_eq!(limits.iter().filter(|e| e.allowed).count(), 2);
}

#[tokio::test]
async fn a_pass_is_recorded_with_its_decision_and_the_latencies_add_up() {
    let f = Fixture::start(|c| {
        c.policy(allow_hello())
            .rate_limiter(ScriptedLimiter::allow_all())
    })
    .await;
    let caller = f.caller(CALLER_ID);
    assert_eq!(caller.get(f.addr, "/hello/ada").await.unwrap().status, 200);
    let audit = f.audit().await;
    let (decision, limited) = (&audit.decisions()[0], &audit.rate_limits()[0]);
    // The limiter's record of a pass is the decision's request.
    assert!(limited.allowed && limited.error.is_none(), "{limited:?}");
    assert_eq!(
        (limited.request_id, limited.timestamp, &limited.input),
        (decision.request_id, decision.timestamp, &decision.input)
    );
    assert_eq!(decision.latency, limited.latency + decision.policy_latency);
    assert!(decision.policy_latency > Duration::ZERO, "{decision:?}");
}

#[tokio::test]
async fn limiter_failure_is_503_and_denies() {
    let f = Fixture::start(|c| {
        c.policy(allow_hello())
            .rate_limiter(ScriptedLimiter::failing())
    })
    .await;
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 503);
    assert_error_body(&response.json().unwrap(), "RATE_LIMITER_UNAVAILABLE");
    assert_eq!(f.handler_calls(), 0);
    let limits = f.audit().await.rate_limits();
    assert!(!limits[0].allowed);
    assert!(limits[0].error.is_some());
    assert!(f.audit().await.decisions().is_empty());
}

#[tokio::test]
async fn policy_error_is_503_and_denies() {
    let policy =
        PolicyFn::new(|_| async { Err(ProviderError::backend("evaluating", "engine crashed")) });
    let f = Fixture::start(|c| c.policy(policy)).await;
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 503);
    assert_error_body(&response.json().unwrap(), "POLICY_UNAVAILABLE");
    assert_eq!(f.handler_calls(), 0);
    let d = &f.audit().await.decisions()[0];
    assert!(!d.allowed);
    assert!(d.error.as_deref().unwrap().contains("evaluating"));
}

#[tokio::test]
async fn policy_timeout_denies() {
    let policy = PolicyFn::new(|_| async {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        Ok(ligand_runtime::EvalResponse::allow())
    });
    let f = Fixture::start(|c| c.policy(policy).policy_timeout(Duration::from_millis(50))).await;
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 503);
    assert_error_body(&response.json().unwrap(), "POLICY_UNAVAILABLE");
    assert_eq!(f.handler_calls(), 0);
    assert!(
        f.audit().await.decisions()[0]
            .error
            .as_deref()
            .unwrap()
            .contains("timed out")
    );
}

const FRONTEND_ID: &str = "spiffe://example.org/service/frontend";

/// The chain header `caller` sends to the server for a request that came from the frontend.
fn frontend_chain(f: &Fixture, caller: &PeerClient) -> String {
    caller
        .chain_header(
            &[&f.caller(FRONTEND_ID)],
            &SpiffeId::new(SERVER_ID).unwrap(),
        )
        .unwrap()
}

#[tokio::test]
async fn a_signed_chain_reaches_policy_and_ctx_verified_with_the_peer_last() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let caller = f.caller(CALLER_ID);
    let header = frontend_chain(&f, &caller);
    let response = caller
        .send(
            f.addr,
            Method::GET,
            "/hello/ada",
            &[(CHAIN_HEADER, &header)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response
            .text()
            .ends_with(&format!("chain={FRONTEND_ID},{CALLER_ID}")),
        "{}",
        response.text()
    );
    let input = &f.audit().await.decisions()[0].input;
    assert_eq!(
        input.chain,
        Chain::from(vec![verified(FRONTEND_ID), verified(CALLER_ID)])
    );
    assert_eq!(input.peer, verified(CALLER_ID));
}

#[tokio::test]
async fn a_chain_sent_as_two_header_lines_is_400_even_when_each_is_valid() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let caller = f.caller(CALLER_ID);
    let header = frontend_chain(&f, &caller);
    // Among other headers, in either order around them: joining the lines is a proxy's guess.
    assert_refused_with(
        &f,
        &caller,
        &[
            (CHAIN_HEADER, &header),
            ("x-request-tag", "a"),
            (CHAIN_HEADER, &header),
        ],
        "CHAIN_MALFORMED",
    )
    .await;
    // One line among the same others is the chain.
    let response = caller
        .send(
            f.addr,
            Method::GET,
            "/hello/ada",
            &[("x-request-tag", "a"), (CHAIN_HEADER, &header)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
}

/// Sends `header` as the chain from `caller` (a `CALLER_ID`) and expects a 400 with `code`
/// that reached neither policy nor the handler.
async fn assert_chain_refused(f: &Fixture, caller: &PeerClient, header: &str, code: &str) {
    assert_refused_with(f, caller, &[(CHAIN_HEADER, header)], code).await;
}

/// Sends `headers` from `caller` and expects a 400 with `code` that reached neither policy
/// nor the handler.
async fn assert_refused_with(
    f: &Fixture,
    caller: &PeerClient,
    headers: &[(&str, &str)],
    code: &str,
) {
    let response = caller
        .send(f.addr, Method::GET, "/hello/ada", headers, Vec::new())
        .await
        .unwrap();
    assert_eq!(response.status, 400, "{}", response.text());
    assert_error_body(&response.json().unwrap(), code);
    assert_eq!(f.handler_calls(), 0);
    assert!(f.audit().await.decisions().is_empty());
}

#[tokio::test]
async fn a_forged_or_tampered_chain_is_400_with_its_code_and_never_evaluated() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    // The unsigned JSON chain of old: anyone could write it.
    let forged = r#"[{"workload":"spiffe://example.org/service/admin"}]"#;
    assert_chain_refused(&f, &f.caller(CALLER_ID), forged, "CHAIN_MALFORMED").await;
    let server = SpiffeId::new(SERVER_ID).unwrap();
    // One caller signs and sends: a version 2 token names the certificate of the connection
    // that carries it.
    let caller = f.caller(CALLER_ID);
    let valid = caller
        .chain_header(&[&f.caller(FRONTEND_ID)], &server)
        .unwrap();
    // A flipped signature byte.
    let mut tampered = valid.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let response = caller
        .send(
            f.addr,
            Method::GET,
            "/hello/ada",
            &[(CHAIN_HEADER, &tampered)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    let code = response.json().unwrap()["error_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        code == "CHAIN_BAD_SIGNATURE" || code == "CHAIN_MALFORMED",
        "{code}"
    );
    // The upstream hop removed: the caller's token no longer links up.
    let (_, own) = valid.split_once(',').unwrap();
    assert_chain_refused(&f, &caller, own, "CHAIN_BROKEN").await;
    // A chain signed by another workload, sent by the caller.
    let stolen = f
        .caller("spiffe://example.org/service/intruder")
        .chain_header(&[], &server)
        .unwrap();
    assert_chain_refused(&f, &caller, &stolen, "CHAIN_PEER_MISMATCH").await;
    // A chain the caller signed for another service.
    let elsewhere = caller
        .chain_header(
            &[],
            &SpiffeId::new("spiffe://example.org/service/other").unwrap(),
        )
        .unwrap();
    assert_chain_refused(&f, &caller, &elsewhere, "CHAIN_WRONG_AUDIENCE").await;
    // Two header lines: joining them would be a guess.
    let response = caller
        .send(
            f.addr,
            Method::GET,
            "/hello/ada",
            &[(CHAIN_HEADER, &valid), (CHAIN_HEADER, &valid)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 400);
    assert_error_body(&response.json().unwrap(), "CHAIN_MALFORMED");
    // And the valid chain itself still passes: nothing above was cached as a success.
    let response = caller
        .send(
            f.addr,
            Method::GET,
            "/hello/ada",
            &[(CHAIN_HEADER, &valid)],
            Vec::new(),
        )
        .await
        .unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(f.handler_calls(), 1);
}

#[tokio::test]
async fn requests_are_refused_while_the_service_is_not_ready() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    ligand_runtime::testkit::set_health(
        &f.server,
        ligand_runtime::ProviderKind::Policy,
        ligand_runtime::State::Unavailable,
        Some("test".into()),
    );
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/ada").await.unwrap();
    assert_eq!(response.status, 503);
    assert_error_body(&response.json().unwrap(), "SERVICE_NOT_READY");
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn unknown_route_is_json_404_and_audited() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = f.caller(CALLER_ID).get(f.addr, "/nope").await.unwrap();
    assert_eq!(response.status, 404);
    let body = response.json().unwrap();
    assert_eq!(body["error_code"], "NOT_FOUND");
    let decisions = f.audit().await.decisions();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    let record = &decisions[0];
    assert!(!record.allowed);
    assert_eq!(record.request_id.as_str(), body["request_id"]);
    assert_eq!(record.input.request.path, "/nope");
    assert_eq!(record.input.action.name, "GET");
    assert_eq!(
        record.input.chain.peer().unwrap().principal(),
        Some(CALLER_ID)
    );
    assert_eq!(f.handler_calls(), 0);
    let _ = SERVER_ID;
}

#[tokio::test]
async fn wrong_method_on_a_route_is_json_405_and_audited() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = f
        .caller(CALLER_ID)
        .send(f.addr, Method::PUT, "/hello/ada", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(response.status, 405);
    let body = response.json().unwrap();
    assert_eq!(body["error_code"], "METHOD_NOT_ALLOWED");
    let decisions = f.audit().await.decisions();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert!(!decisions[0].allowed);
    assert_eq!(decisions[0].request_id.as_str(), body["request_id"]);
    assert_eq!(decisions[0].input.action.name, "PUT");
    assert_eq!(f.handler_calls(), 0);
}

#[tokio::test]
async fn policy_sees_the_path_parameters_decoded_as_the_handler_does() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = f
        .caller(CALLER_ID)
        .get(f.addr, "/hello/a%2Fb%20c")
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.text().starts_with("hello a/b c|"),
        "{}",
        response.text()
    );
    let decisions = f.audit().await.decisions();
    let line = &decisions[0].input.request;
    assert_eq!(line.params.get("name"), Some("a/b c"));
    assert_eq!(line.path, "/hello/a%2Fb%20c");
    let input = serde_json::to_value(&*decisions[0].input).unwrap();
    assert_eq!(
        input["request"]["params"],
        serde_json::json!({"name": "a/b c"})
    );
}

#[tokio::test]
async fn a_path_parameter_that_is_not_utf8_once_decoded_is_refused_before_policy() {
    let f = Fixture::start(|c| c.policy(allow_hello())).await;
    let response = f.caller(CALLER_ID).get(f.addr, "/hello/%FF").await.unwrap();
    assert_eq!(response.status, 400);
    assert_error_body(&response.json().unwrap(), "BAD_REQUEST");
    assert_eq!(f.handler_calls(), 0);
    assert!(f.audit().await.decisions().is_empty());
}

#[tokio::test]
async fn each_server_on_a_thread_puts_its_own_id_in_the_input() {
    use ligand_runtime::testkit::{FakeIdentity, TestCa};
    use ligand_runtime::{
        Action, Config, InboundRequest, RequestLine, Resource, init_trust_boundary,
    };

    let ca = TestCa::new("example.org");
    let ids = [
        "spiffe://example.org/service/a",
        "spiffe://example.org/service/b",
    ];
    let mut servers = Vec::new();
    for id in ids {
        let config = Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(id))))
            .policy(AllowList::new().allow(CALLER_ID, "GET", "/x"))
            .build();
        servers.push(init_trust_boundary(config).await.unwrap());
    }
    // One thread (the test's runtime is single-threaded), alternating servers.
    for _ in 0..2 {
        for (server, id) in servers.iter().zip(ids) {
            let enforced = server
                .enforce(InboundRequest {
                    chain: Chain::new(),
                    peer: Link::workload(CALLER_ID),
                    resource: Resource::http_path("/x"),
                    action: Action::new("GET"),
                    request: RequestLine::new(Method::GET, "/x"),
                    txn: None,
                })
                .await
                .unwrap();
            assert_eq!(&*enforced.input.service, id);
        }
    }
}
