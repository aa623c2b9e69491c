//! The OAuth 2.0 Token Exchange endpoint (RFC 8693) of a gateway: an external caller trades
//! its access token for a Transaction Token it then carries itself.
//!
//! Two layers decide, in this order, as in the STS this follows:
//!
//! 1. the subject token: its issuer on the allow-list (`ISSUER_NOT_ALLOWED` before any key is
//!    looked at), then signature, audience and lifetime by the [`TxnMinter`](crate::TxnMinter)
//!    (`invalid_grant` / `INVALID_TOKEN`);
//! 2. the enforcement pipeline with the subject as a `user` link, action `token_exchange`,
//!    resource the endpoint's path, the would-be token's claims as `input.txn` (the narrowed
//!    `scope`, the requested `resource` in `tctx`): rate limit, then policy, one
//!    `DecisionEvent` per exchange that reaches the policy.
//!
//! Only when both allow is the token handed out. Every refusal is an RFC 6749 §5.2 body with
//! the stable `error_code` and the `request_id` of the audit events, and `Cache-Control:
//! no-store` like the success.

use std::borrow::Cow;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode};
use serde_json::{Map, Value};

use crate::chain::Chain;
use crate::error::Denial;
use crate::request::{Action, InboundRequest, RequestLine, Resource};
use crate::request_id::RequestId;
use crate::server::Server;
use crate::txn::{MintError, TxnMintRequest, TxnRejection};

/// `grant_type` of a token exchange (RFC 8693 §2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of a Transaction Token (draft-ietf-oauth-transaction-tokens §5), the only
/// `requested_token_type` served.
pub const TXN_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";
/// Subject token types accepted: an access token, or a JWT (both validated as an access token).
const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:access_token",
    "urn:ietf:params:oauth:token-type:jwt",
];
/// The policy action of an exchange.
pub const TOKEN_EXCHANGE_ACTION: &str = "token_exchange";
/// The largest form body read; a longer one is refused unread.
const MAX_FORM_LEN: usize = 64 * 1024;

/// The parameters of a token exchange request, borrowed from the form where no
/// percent-decoding was needed.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct ExchangeForm<'a> {
    pub(crate) grant_type: Option<Cow<'a, str>>,
    pub(crate) subject_token: Option<Cow<'a, str>>,
    pub(crate) subject_token_type: Option<Cow<'a, str>>,
    pub(crate) requested_token_type: Option<Cow<'a, str>>,
    pub(crate) audience: Option<Cow<'a, str>>,
    pub(crate) scope: Option<Cow<'a, str>>,
    pub(crate) resource: Option<Cow<'a, str>>,
    pub(crate) actor_token: Option<Cow<'a, str>>,
}

/// Parses an `application/x-www-form-urlencoded` body. A parameter sent twice is refused
/// (RFC 6749 §3.2), as is an empty value of a known one; unknown parameters are ignored
/// (RFC 6749 §3.2). `Err` names the offending parameter.
pub(crate) fn parse_form(body: &[u8]) -> Result<ExchangeForm<'_>, &'static str> {
    let mut form = ExchangeForm::default();
    for (name, value) in form_urlencoded::parse(body) {
        let (slot, name) = match &*name {
            "grant_type" => (&mut form.grant_type, "grant_type"),
            "subject_token" => (&mut form.subject_token, "subject_token"),
            "subject_token_type" => (&mut form.subject_token_type, "subject_token_type"),
            "requested_token_type" => (&mut form.requested_token_type, "requested_token_type"),
            "audience" => (&mut form.audience, "audience"),
            "scope" => (&mut form.scope, "scope"),
            "resource" => (&mut form.resource, "resource"),
            "actor_token" => (&mut form.actor_token, "actor_token"),
            _ => continue,
        };
        if slot.is_some() || value.is_empty() {
            return Err(name);
        }
        *slot = Some(value);
    }
    Ok(form)
}

/// A refused exchange: the RFC 6749 `error`, the stable `error_code`, the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    status: StatusCode,
    error: &'static str,
    code: &'static str,
    description: &'static str,
    retry_after: Option<u64>,
}

impl Refusal {
    const fn new(
        status: StatusCode,
        error: &'static str,
        code: &'static str,
        description: &'static str,
    ) -> Self {
        Self {
            status,
            error,
            code,
            description,
            retry_after: None,
        }
    }

    const fn invalid_request(description: &'static str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "INVALID_REQUEST",
            description,
        )
    }

    fn response(self, request_id: RequestId) -> Response {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            error: &'a str,
            error_description: &'a str,
            error_code: &'a str,
            request_id: &'a str,
        }
        let body = Body {
            error: self.error,
            error_description: self.description,
            error_code: self.code,
            request_id: request_id.as_str(),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        no_store(&mut response);
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// RFC 6749 §5.1: neither the token nor a refusal is cached.
fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(http::header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The RFC 8693 §2.2.1 response.
#[derive(serde::Serialize)]
struct Issued<'a> {
    access_token: &'a str,
    issued_token_type: &'static str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<&'a str>,
}

/// `POST <sts_path>` on the gateway listener.
pub(crate) async fn exchange(
    server: Server,
    path: Arc<str>,
    request: axum::extract::Request,
) -> Response {
    let request_id = RequestId::new();
    match exchange_inner(&server, &path, request, request_id).await {
        Ok(response) => response,
        Err(refusal) => refusal.response(request_id),
    }
}

async fn exchange_inner(
    server: &Server,
    path: &Arc<str>,
    request: axum::extract::Request,
    request_id: RequestId,
) -> Result<Response, Refusal> {
    let (mut parts, body) = request.into_parts();
    // Only the gateway listener sets the caller's address.
    let (Some(external), Some(gateway)) = (
        crate::service::CallerSlot::take_external(&mut parts.extensions),
        server.gateway_config(),
    ) else {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request",
            "UNAUTHENTICATED",
            "not a gateway connection",
        ));
    };
    if !is_form(parts.headers.get(http::header::CONTENT_TYPE)) {
        return Err(Refusal::invalid_request(
            "content type must be application/x-www-form-urlencoded",
        ));
    }
    let body = axum::body::to_bytes(body, MAX_FORM_LEN)
        .await
        .map_err(|_| Refusal::invalid_request("request body unreadable or too large"))?;
    let form = parse_form(&body)
        .map_err(|_| Refusal::invalid_request("a parameter is repeated or empty"))?;

    match form.grant_type.as_deref() {
        None => return Err(Refusal::invalid_request("grant_type is required")),
        Some(TOKEN_EXCHANGE_GRANT) => {}
        Some(_) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "INVALID_REQUEST",
                "only the token-exchange grant is supported",
            ));
        }
    }
    let Some(subject_token) = form.subject_token.as_deref() else {
        return Err(Refusal::invalid_request("subject_token is required"));
    };
    match form.subject_token_type.as_deref() {
        None => return Err(Refusal::invalid_request("subject_token_type is required")),
        Some(t) if SUBJECT_TOKEN_TYPES.contains(&t) => {}
        Some(_) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "unsupported_token_type",
                "INVALID_REQUEST",
                "subject_token_type must be an access token or a JWT",
            ));
        }
    }
    if form
        .requested_token_type
        .as_deref()
        .is_some_and(|t| t != TXN_TOKEN_TYPE)
    {
        return Err(Refusal::invalid_request(
            "requested_token_type must be a transaction token",
        ));
    }
    if form.actor_token.is_some() {
        return Err(Refusal::invalid_request(
            "delegation (actor_token) is not supported",
        ));
    }
    let minter = &gateway.minter;
    // A Transaction Token is for the whole trust domain and nothing else.
    if form
        .audience
        .as_deref()
        .is_some_and(|aud| aud != minter.trust_domain())
    {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            "INVALID_REQUEST",
            "audience must be the trust domain",
        ));
    }

    // Layer one: the issuer allow-list before anything else is done with the token, then
    // the full validation. The unverified `iss` only ever refuses; it never admits.
    let untrusted_issuer = Refusal::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "ISSUER_NOT_ALLOWED",
        "subject token issuer not allowed",
    );
    let invalid_token = Refusal::new(
        StatusCode::BAD_REQUEST,
        "invalid_grant",
        "INVALID_TOKEN",
        "subject token rejected",
    );
    match unverified_issuer(subject_token) {
        Some(iss) if minter.accepts_issuer(&iss) => {}
        Some(_) => {
            tracing::debug!(%request_id, remote = %external.addr, "token exchange: issuer not allowed");
            return Err(untrusted_issuer);
        }
        None => return Err(invalid_token),
    }
    let mut mint = TxnMintRequest::new();
    let mut rctx = Map::new();
    rctx.insert("req_ip".into(), external.addr.ip().to_string().into());
    mint = mint.rctx(rctx);
    if let Some(scope) = form.scope.as_deref() {
        mint = mint.scope(scope);
    }
    if let Some(resource) = form.resource.as_deref() {
        let mut tctx = Map::new();
        tctx.insert("resource".into(), Value::from(resource));
        mint = mint.tctx(tctx);
    }
    let minted = match minter.mint(subject_token, &mint, std::time::SystemTime::now()) {
        Ok(minted) => minted,
        Err(MintError::SubjectToken(TxnRejection::UntrustedIssuer)) => {
            return Err(untrusted_issuer);
        }
        Err(MintError::SubjectToken(rejection)) => {
            tracing::debug!(%request_id, remote = %external.addr, %rejection, "token exchange: subject token refused");
            return Err(invalid_token);
        }
        Err(MintError::ScopeNotGranted(_)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_scope",
                "INVALID_REQUEST",
                "requested scope exceeds the subject token's",
            ));
        }
        Err(error) => {
            tracing::error!(%request_id, %error, "token exchange: minting failed");
            return Err(internal());
        }
    };

    // Layer two: the policy decides on the exchange itself.
    let claims = Arc::new(minted.claims);
    let inbound = InboundRequest {
        chain: Chain::new(),
        peer: crate::gateway::caller(&claims),
        resource: Resource::http_path(path.to_string()),
        action: Action::new(TOKEN_EXCHANGE_ACTION),
        request: RequestLine::new(http::Method::POST, &**path),
        txn: Some(claims.clone()),
    };
    if let Err(denied) = server.pipeline(inbound, request_id).finish().await {
        return Err(pipeline_refusal(&denied.denial));
    }
    let now = std::time::SystemTime::now();
    let expires_in = minted
        .expires_at
        .duration_since(now)
        .map_or(0, |d| d.as_secs());
    let body = Issued {
        access_token: &minted.token,
        issued_token_type: TXN_TOKEN_TYPE,
        token_type: "N_A",
        expires_in,
        scope: form.scope.as_deref().and(claims.scope.as_deref()),
    };
    let mut response = (StatusCode::OK, axum::Json(body)).into_response();
    no_store(&mut response);
    Ok(response)
}

fn internal() -> Refusal {
    Refusal::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "INTERNAL_ERROR",
        "internal error",
    )
}

/// How a pipeline denial reads to a token-exchange client.
fn pipeline_refusal(denial: &Denial) -> Refusal {
    match denial {
        Denial::RateLimited { retry_after } => {
            let secs = retry_after
                .map_or(1, |d| d.as_secs() + u64::from(d.subsec_nanos() > 0))
                .max(1);
            Refusal {
                retry_after: Some(secs),
                ..Refusal::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "temporarily_unavailable",
                    "RATE_LIMITED",
                    "rate limited",
                )
            }
        }
        Denial::PolicyDenied => Refusal::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            "POLICY_DENIED",
            "token exchange denied by policy",
        ),
        Denial::RateLimiterFailure | Denial::PolicyFailure | Denial::NotReady => Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            denial.code(),
            "service unavailable",
        ),
        _ => Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
            "INVALID_TOKEN",
            "subject token rejected",
        ),
    }
}

/// A path the endpoint can be served at: absolute, without captures or wildcards.
pub fn is_literal_path(path: &str) -> bool {
    path.starts_with('/') && !path.contains(['{', '}', '*'])
}

/// `application/x-www-form-urlencoded`, parameters (a charset) allowed.
fn is_form(content_type: Option<&HeaderValue>) -> bool {
    const FORM: &[u8] = b"application/x-www-form-urlencoded";
    let Some(value) = content_type else {
        return false;
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    essence.eq_ignore_ascii_case(FORM)
}

/// The `iss` of a compact JWS's payload, read without verifying anything: used only to
/// refuse an issuer not on the allow-list before the token is validated.
fn unverified_issuer(token: &str) -> Option<String> {
    let mut segments = token.split('.');
    let (Some(_), Some(payload), Some(_), None) = (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) else {
        return None;
    };
    let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
    #[derive(serde::Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    serde_json::from_slice::<Iss>(&payload).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_form_takes_each_parameter_once() {
        let form = parse_form(b"grant_type=a%3Ab&subject_token=t&scope=read+write&x=1").unwrap();
        assert_eq!(form.grant_type.as_deref(), Some("a:b"));
        assert_eq!(form.subject_token.as_deref(), Some("t"));
        assert_eq!(form.scope.as_deref(), Some("read write"));
        assert_eq!(parse_form(b"scope=a&scope=b"), Err("scope"));
        assert_eq!(parse_form(b"subject_token="), Err("subject_token"));
        assert_eq!(parse_form(b""), Ok(ExchangeForm::default()));
    }

    #[test]
    fn only_a_form_content_type_is_a_form() {
        let form = |v: &'static str| is_form(Some(&HeaderValue::from_static(v)));
        assert!(form("application/x-www-form-urlencoded"));
        assert!(form("Application/X-WWW-Form-Urlencoded; charset=UTF-8"));
        assert!(!form("application/json"));
        assert!(!form("multipart/form-data"));
        assert!(!is_form(None));
    }

    #[test]
    fn the_issuer_is_read_from_a_three_part_token_only() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"iss":"https://idp"}"#);
        assert_eq!(
            unverified_issuer(&format!("h.{payload}.s")).as_deref(),
            Some("https://idp")
        );
        assert_eq!(unverified_issuer(&format!("h.{payload}")), None);
        assert_eq!(unverified_issuer(&format!("h.{payload}.s.x")), None);
        assert_eq!(unverified_issuer("h.!!.s"), None);
    }

    proptest! {
        #[test]
        fn the_form_parser_never_panics_and_never_repeats(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(form) = parse_form(&body) {
                for value in [&form.grant_type, &form.subject_token, &form.scope, &form.audience] {
                    prop_assert!(value.as_deref().is_none_or(|v| !v.is_empty()));
                }
            }
        }

        #[test]
        fn any_token_string_is_read_without_panicking(token in "\\PC{0,200}") {
            let _ = unverified_issuer(&token);
        }

        #[test]
        fn any_value_round_trips(value in "\\PC{1,64}") {
            let body = form_urlencoded::Serializer::new(String::new())
                .append_pair("subject_token", &value)
                .finish();
            let form = parse_form(body.as_bytes()).unwrap();
            prop_assert_eq!(form.subject_token.as_deref(), Some(value.as_str()));
        }
    }
}
