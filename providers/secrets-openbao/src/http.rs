//! The HTTPS client: the framework's pooled dialer, OpenBao's headers, bounded bodies, and the
//! mapping of statuses and `{"errors":[…]}` bodies to [`OpenBaoError`].

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use ligand_runtime::dial::{DialError, Dialer};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::error::OpenBaoError;

/// At most this many of OpenBao's error messages are kept, each cut to [`MAX_MESSAGE`].
const MAX_MESSAGES: usize = 5;
const MAX_MESSAGE: usize = 200;

/// The token header of the OpenBao / Vault HTTP API.
pub(crate) const TOKEN_HEADER: &str = "x-vault-token";

/// A client for one OpenBao address.
#[derive(Debug)]
pub(crate) struct Http {
    /// Bounds each exchange by the request timeout and the response size limit.
    dialer: Dialer,
    base: String,
}

impl Http {
    pub(crate) fn new(base: &str, dialer: Dialer) -> Self {
        Self {
            dialer,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Calls `/v1/<path>` and returns the body of a 2xx answer; any other status is mapped to
    /// its typed error. The body is copied into a zeroizing buffer (hyper's own buffers are
    /// released to the allocator without being cleared: a limit of any HTTP client).
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Vec<u8>>,
    ) -> Result<Zeroizing<Vec<u8>>, OpenBaoError> {
        let uri = format!("{}/v1/{path}", self.base);
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(token) = token {
            let mut value = header::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                OpenBaoError::Config("the token is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            request = request.header(TOKEN_HEADER, value);
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| OpenBaoError::Config(format!("bad request for {path:?}: {e}")))?;
        let response = self.dialer.request(request).await.map_err(|e| match e {
            DialError::Timeout(_) => OpenBaoError::Timeout {
                path: path.to_owned(),
            },
            e => OpenBaoError::Transport {
                path: path.to_owned(),
                source: Box::new(e),
            },
        })?;
        let status = response.status();
        let body = Zeroizing::new(response.into_body().to_vec());
        if status.is_success() {
            Ok(body)
        } else {
            Err(status_error(path, status, &body))
        }
    }
}

/// Maps a non-2xx answer to its typed error, keeping OpenBao's error messages (documented to
/// describe the failure, never to echo a secret) but nothing else of the body.
pub(crate) fn status_error(path: &str, status: StatusCode, body: &[u8]) -> OpenBaoError {
    #[derive(serde::Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        errors: Vec<String>,
    }
    let errors: Vec<String> = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
        .into_iter()
        .take(MAX_MESSAGES)
        .map(|m| m.chars().take(MAX_MESSAGE).collect())
        .collect();
    let path = path.to_owned();
    match status {
        StatusCode::BAD_REQUEST => OpenBaoError::BadRequest { path, errors },
        StatusCode::FORBIDDEN => OpenBaoError::PermissionDenied { path, errors },
        StatusCode::NOT_FOUND => OpenBaoError::NotFound { path },
        StatusCode::SERVICE_UNAVAILABLE
            if errors
                .iter()
                .any(|m| m.to_ascii_lowercase().contains("sealed")) =>
        {
            OpenBaoError::Sealed { path }
        }
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            OpenBaoError::Unavailable {
                path,
                status: s.as_u16(),
                errors,
            }
        }
        s => OpenBaoError::UnexpectedStatus {
            path,
            status: s.as_u16(),
            errors,
        },
    }
}

/// Checks that a secret name can be sent as an API path as it is: a relative path of plain
/// components in the characters OpenBao paths use, so no encoding is needed and nothing can
/// turn it into another endpoint (`..`, `?`, `#`).
pub(crate) fn validate_path(path: &str) -> Result<(), OpenBaoError> {
    let invalid = |reason| {
        Err(OpenBaoError::InvalidPath {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() || path.len() > 1024 {
        return invalid("the path is empty or too long");
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.@+=:,~".contains(c);
    for component in path.split('/') {
        if component.is_empty() || component == "." || component == ".." {
            return invalid("empty, `.` and `..` components are not allowed");
        }
        if !component.chars().all(allowed) {
            return invalid("only ASCII letters, digits and -_.@+=:,~ are allowed");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_typed_errors() {
        let sealed = status_error(
            "secret/data/x",
            StatusCode::SERVICE_UNAVAILABLE,
            br#"{"errors":["Vault is sealed"]}"#,
        );
        assert!(matches!(sealed, OpenBaoError::Sealed { .. }));
        let standby = status_error("p", StatusCode::SERVICE_UNAVAILABLE, b"<html>");
        assert!(matches!(
            standby,
            OpenBaoError::Unavailable { status: 503, .. }
        ));
        let denied = status_error(
            "p",
            StatusCode::FORBIDDEN,
            br#"{"errors":["permission denied"]}"#,
        );
        assert_eq!(
            denied.to_string(),
            r#"permission denied on "p": permission denied"#
        );
        assert!(matches!(
            status_error("p", StatusCode::NOT_FOUND, br#"{"errors":[]}"#),
            OpenBaoError::NotFound { .. }
        ));
        assert!(status_error("p", StatusCode::BAD_REQUEST, b"").is_gone());
        assert!(matches!(
            status_error("p", StatusCode::IM_A_TEAPOT, b""),
            OpenBaoError::UnexpectedStatus { status: 418, .. }
        ));
    }

    #[test]
    fn paths_are_plain() {
        for ok in ["secret/data/accounts/db", "database/creds/app-ro", "kv/a@b"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "", "/abs", "a/../b", "a//b", "a?x=1", "a#b", "a b", "a/./b", "a%2e",
        ] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }
}
