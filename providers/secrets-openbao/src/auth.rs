//! Logging in and keeping the token alive: `lookup-self` for a given token, certificate and
//! JWT logins, `renew-self` at half the token's TTL, and a fresh login when renewal is not
//! possible.

use std::sync::Weak;
use std::time::Duration;

use http::Method;
use secrecy::SecretString;
use serde_json::json;

use crate::api::{self, AuthResponse, LookupSelf};
use crate::config::Auth;
use crate::error::OpenBaoError;
use crate::provider::Shared;

/// The shortest wait between token maintenance attempts.
const MIN_WAIT: Duration = Duration::from_secs(1);

/// A token and its lifetime (`ttl` zero: it does not expire).
pub(crate) struct Login {
    pub(crate) token: SecretString,
    pub(crate) ttl: Duration,
    pub(crate) renewable: bool,
}

impl Shared {
    /// Obtains a token with the configured method.
    pub(crate) async fn login(&self) -> Result<Login, OpenBaoError> {
        let method = self.settings.auth.method();
        let failed = |source| OpenBaoError::Login {
            method,
            source: Box::new(source),
        };
        match &self.settings.auth {
            Auth::Token(token) => {
                // Checks the token is valid, and learns whether it expires.
                let path = "auth/token/lookup-self";
                let body = self
                    .http()
                    .map_err(failed)?
                    .call(Method::GET, path, Some(token), None)
                    .await
                    .map_err(failed)?;
                let lookup: LookupSelf = api::parse(path, &body).map_err(failed)?;
                let data = lookup.data.ok_or_else(|| {
                    failed(OpenBaoError::InvalidResponse {
                        path: path.to_owned(),
                        reason: "no token data".into(),
                    })
                })?;
                Ok(Login {
                    token: token.clone(),
                    ttl: Duration::from_secs(data.ttl),
                    renewable: data.renewable,
                })
            }
            Auth::TokenFromEnv => Err(OpenBaoError::MissingToken),
            Auth::Cert { mount, role } => {
                let path = format!("auth/{mount}/login");
                let body = match role {
                    Some(role) => json!({ "name": role }),
                    None => json!({}),
                };
                self.auth_call(&path, body).await.map_err(failed)
            }
            Auth::Jwt {
                mount,
                role,
                jwt_path,
            } => {
                let jwt = tokio::fs::read_to_string(jwt_path)
                    .await
                    .map_err(|source| OpenBaoError::JwtFile {
                        path: jwt_path.clone(),
                        source,
                    })?;
                let path = format!("auth/{mount}/login");
                let body = json!({ "role": role, "jwt": jwt.trim() });
                drop(zeroize::Zeroizing::new(jwt));
                self.auth_call(&path, body).await.map_err(failed)
            }
        }
    }

    /// Renews the current token (`POST auth/token/renew-self`).
    async fn renew_self(&self) -> Result<Login, OpenBaoError> {
        let path = "auth/token/renew-self";
        let body = self.call(Method::POST, path, Some(b"{}".to_vec())).await?;
        parse_auth(path, &body)
    }

    async fn auth_call(&self, path: &str, body: serde_json::Value) -> Result<Login, OpenBaoError> {
        let body = zeroize::Zeroizing::new(
            serde_json::to_vec(&body)
                .map_err(|_| OpenBaoError::Config("the login body could not be encoded".into()))?,
        );
        let response = self
            .call_anonymous(Method::POST, path, Some(body.to_vec()))
            .await?;
        parse_auth(path, &response)
    }
}

fn parse_auth(path: &str, body: &[u8]) -> Result<Login, OpenBaoError> {
    let response: AuthResponse = api::parse(path, body)?;
    let auth = response.auth.ok_or_else(|| OpenBaoError::InvalidResponse {
        path: path.to_owned(),
        reason: "no auth block".into(),
    })?;
    Ok(Login {
        token: auth.client_token,
        ttl: Duration::from_secs(auth.lease_duration),
        renewable: auth.renewable,
    })
}

/// Keeps the token valid: at half its TTL, renew it when renewable, else log in again (cert,
/// JWT). A failure is retried at half the remaining time; a token that can be neither renewed
/// nor replaced is left to expire, after which reads fail (fail closed).
pub(crate) async fn maintain(shared: Weak<Shared>, mut ttl: Duration, mut renewable: bool) {
    let mut deadline = tokio::time::Instant::now() + ttl;
    loop {
        let now = tokio::time::Instant::now();
        let wait = ((deadline.saturating_duration_since(now)) / 2).max(MIN_WAIT);
        tokio::time::sleep(wait).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.is_closed() {
            return;
        }
        let can_login = matches!(shared.settings.auth, Auth::Cert { .. } | Auth::Jwt { .. });
        let result = if renewable {
            match shared.renew_self().await {
                Err(_) if can_login => shared.login().await,
                other => other,
            }
        } else if can_login {
            shared.login().await
        } else {
            tracing::warn!("the OpenBao token is not renewable; reads fail once it expires");
            return;
        };
        match result {
            Ok(login) => {
                (ttl, renewable) = (login.ttl, login.renewable);
                shared.set_token(login.token);
                if ttl.is_zero() {
                    return;
                }
                deadline = tokio::time::Instant::now() + ttl;
            }
            Err(error) => {
                tracing::warn!(%error, "OpenBao token renewal failed; retrying");
            }
        }
    }
}
