//! The OPA bundle HTTP protocol: `GET /bundles/<name>`, ETags, `If-None-Match` and long
//! polling with `Prefer: wait=N`.
//!
//! OPA's downloader sends `If-None-Match` with the ETag it last received and, when long polling
//! is configured, `Prefer: modes=snapshot,delta;wait=N`. It keeps long polling only while
//! responses carry `Content-Type: application/vnd.openpolicyagent.bundles`; otherwise it falls
//! back to periodic polling. So a request that asks to wait gets that content type on its 200
//! (and on its 304, which older OPA releases also inspect); a plain request gets
//! `application/gzip`.

use std::sync::Arc;
use std::time::Duration;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Bytes;
use spiffe::SpiffeId;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::layout::is_valid_bundle_name;
use crate::scope::Scoping;
use crate::store::{BuiltBundle, BundleStore};

/// The path prefix of bundle resources.
pub const BUNDLE_PATH_PREFIX: &str = "/bundles/";
/// The content type of a bundle served to a plain request.
pub const GZIP: &str = "application/gzip";
/// The content type that tells OPA the server supports long polling.
pub const OPA_LONG_POLL: &str = "application/vnd.openpolicyagent.bundles";
/// The longest a request may wait for a new revision, whatever it asks.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(60);

/// The tracing target of the per-fetch audit lines.
pub const AUDIT_TARGET: &str = "ligand::audit";

/// What every connection's requests share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Arc<BundleStore>,
    pub(crate) scoping: Scoping,
    pub(crate) max_wait: Duration,
    /// Cancelled at shutdown: pending long polls answer 304 at once.
    pub(crate) stop: CancellationToken,
}

/// One request's answer, before it becomes an HTTP response (kept separate for the audit).
#[derive(Debug)]
enum Outcome {
    Bundle(Arc<BuiltBundle>),
    NotModified(Arc<BuiltBundle>),
    Forbidden,
    NotFound,
    MethodNotAllowed,
}

impl Outcome {
    fn status(&self) -> StatusCode {
        match self {
            Self::Bundle(_) => StatusCode::OK,
            Self::NotModified(_) => StatusCode::NOT_MODIFIED,
            Self::Forbidden => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }
}

/// Answers one request from `caller` (verified in the mTLS handshake) and writes its audit
/// line.
pub(crate) async fn handle(
    shared: &Shared,
    caller: &SpiffeId,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
) -> Response<Full<Bytes>> {
    let requested = path.strip_prefix(BUNDLE_PATH_PREFIX).unwrap_or(path);
    let wait = prefer_wait(headers).map(|secs| Duration::from_secs(secs).min(shared.max_wait));
    let long_poll = wait.is_some_and(|w| !w.is_zero());
    let outcome = decide(shared, caller, method, path, headers, wait).await;
    let revision = match &outcome {
        Outcome::Bundle(b) | Outcome::NotModified(b) => b.revision(),
        _ => "",
    };
    tracing::info!(
        target: AUDIT_TARGET,
        caller = %caller,
        bundle = %requested,
        revision = %revision,
        outcome = outcome.status().as_u16(),
        long_poll,
        "bundle fetch"
    );
    respond(outcome, long_poll)
}

async fn decide(
    shared: &Shared,
    caller: &SpiffeId,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    wait: Option<Duration>,
) -> Outcome {
    if method != Method::GET {
        return Outcome::MethodNotAllowed;
    }
    let Some(name) = path
        .strip_prefix(BUNDLE_PATH_PREFIX)
        .filter(|n| is_valid_bundle_name(n))
    else {
        return Outcome::NotFound;
    };
    // Any bundle but the caller's own is refused alike, whether it exists or not, so that a
    // caller learns nothing about other services.
    if shared.scoping.bundle_for(caller).as_deref() != Some(name) {
        return Outcome::Forbidden;
    }
    // Subscribe before reading, so that a change between the read and the wait is not missed.
    let mut changes = shared.store.subscribe();
    let mut current = changes.borrow_and_update().get(name).cloned();
    let deadline = wait.filter(|w| !w.is_zero()).map(|w| Instant::now() + w);
    loop {
        let Some(bundle) = current else {
            return Outcome::NotFound;
        };
        if !etag_matches(headers, bundle.revision()) {
            return Outcome::Bundle(bundle);
        }
        let Some(deadline) = deadline else {
            return Outcome::NotModified(bundle);
        };
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Outcome::NotModified(bundle);
                }
                current = changes.borrow_and_update().get(name).cloned();
            }
            () = sleep_until(deadline) => return Outcome::NotModified(bundle),
            () = shared.stop.cancelled() => return Outcome::NotModified(bundle),
        }
    }
}

fn respond(outcome: Outcome, long_poll: bool) -> Response<Full<Bytes>> {
    let status = outcome.status();
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let content_type = if long_poll { OPA_LONG_POLL } else { GZIP };
    match outcome {
        Outcome::Bundle(bundle) => {
            insert_etag(headers, &bundle);
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            *response.body_mut() = Full::new(bundle.archive().clone());
        }
        Outcome::NotModified(bundle) => {
            insert_etag(headers, &bundle);
            if long_poll {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static(OPA_LONG_POLL));
            }
        }
        Outcome::Forbidden => error_body(
            &mut response,
            "BUNDLE_FORBIDDEN",
            "bundle not available to this caller",
        ),
        Outcome::NotFound => error_body(&mut response, "BUNDLE_NOT_FOUND", "no such bundle"),
        Outcome::MethodNotAllowed => {
            response
                .headers_mut()
                .insert(http::header::ALLOW, HeaderValue::from_static("GET"));
            error_body(&mut response, "METHOD_NOT_ALLOWED", "only GET is supported");
        }
    }
    response
}

fn insert_etag(headers: &mut HeaderMap, bundle: &BuiltBundle) {
    // A revision is lowercase hex, always a valid header value; a failure would only drop the
    // header, which makes the client fetch unconditionally next time.
    if let Ok(value) = HeaderValue::from_str(&bundle.etag()) {
        headers.insert(ETAG, value);
    }
}

fn error_body(response: &mut Response<Full<Bytes>>, code: &str, message: &str) {
    let body = format!(r#"{{"error_code":"{code}","error":"{message}"}}"#);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    *response.body_mut() = Full::new(Bytes::from(body));
}

/// The wait a request prefers, in seconds: the first valid `wait=N` among its `Prefer`
/// headers. Both `,`-separated preferences and `;`-separated parameters are searched, since
/// OPA sends `modes=snapshot,delta;wait=N`.
pub fn prefer_wait(headers: &HeaderMap) -> Option<u64> {
    headers
        .get_all(http::header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .find_map(|item| {
            let (key, value) = item.split_once('=')?;
            if !key.trim().eq_ignore_ascii_case("wait") {
                return None;
            }
            value.trim().trim_matches('"').parse::<u64>().ok()
        })
}

/// Whether the request's `If-None-Match` names `revision` (or is `*`). Comparison is weak, as
/// RFC 9110 prescribes for `If-None-Match`; quotes are optional, as some clients drop them.
pub fn etag_matches(headers: &HeaderMap, revision: &str) -> bool {
    headers
        .get_all(http::header::IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|tag| {
            if tag == "*" {
                return true;
            }
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            let tag = tag
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .unwrap_or(tag);
            !tag.is_empty() && tag == revision
        })
}

#[cfg(test)]
mod tests;
