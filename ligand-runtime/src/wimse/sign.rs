//! The outbound side: the workload's proof key, its current WIT (refreshed in the
//! background), and a WPT signed for each attempt.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use http::HeaderValue;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use tokio_util::sync::CancellationToken;

use super::{DEFAULT_WPT_LIFETIME, TokenHash, WPT_TYP};
use crate::error::ProviderError;
use crate::identity::{FetchWitRequest, WorkloadIdentity};
use crate::txn::unix;

/// The shortest wait between two WIT refreshes, so a source that issues very short WITs (or
/// keeps failing) is not asked in a loop.
const MIN_REFRESH: Duration = Duration::from_secs(1);
/// The longest wait before retrying a failed refresh.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// The current WIT and the key it binds.
struct Current {
    wit: HeaderValue,
    wth: TokenHash,
    /// `typ: wpt+jwt`, `alg: ES256`: built once, borrowed by every signature.
    header: Header,
    key: EncodingKey,
    expires_at: SystemTime,
}

/// Signs the WIMSE headers of outbound requests.
pub(crate) struct WptSigner {
    current: ArcSwap<Current>,
}

impl fmt::Debug for WptSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WptSigner")
            .field("wit_expires_at", &self.current.load().expires_at)
            .finish_non_exhaustive()
    }
}

/// The WPT claims, borrowed: nothing is copied to sign one.
#[derive(serde::Serialize)]
struct WptClaims<'a> {
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: &'a str,
    wth: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    tth: Option<&'a str>,
}

impl WptSigner {
    /// Fetches a first WIT from `identity` and keeps it fresh until `stop`. `Ok(None)` when
    /// the identity source issues no WITs (logged once): calls then carry no WIMSE headers.
    pub(crate) async fn start(
        identity: Arc<dyn WorkloadIdentity>,
        stop: CancellationToken,
    ) -> Result<Option<Arc<Self>>, ProviderError> {
        let current = match fetch(&*identity).await {
            Ok(current) => current,
            Err(ProviderError::NotSupported) => {
                tracing::info!(
                    "the identity source issues no Workload Identity Tokens: outbound calls \
                     carry no WIT/WPT headers"
                );
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let signer = Arc::new(Self {
            current: ArcSwap::from_pointee(current),
        });
        tokio::spawn(refresh(signer.clone(), identity, stop));
        Ok(Some(signer))
    }

    /// The WIT and a fresh WPT for a request to `aud`, binding the Transaction Token hash
    /// `tth` if any. `None` once the WIT has expired and could not be refreshed, or if
    /// signing fails: the call then goes without, and a peer that requires them refuses it.
    pub(crate) fn headers(
        &self,
        aud: &str,
        tth: Option<&TokenHash>,
        now: SystemTime,
    ) -> Option<(HeaderValue, HeaderValue)> {
        let current = self.current.load();
        if now >= current.expires_at {
            tracing::debug!("WIT expired and not refreshed: call sent without WIMSE headers");
            return None;
        }
        let mut jti = [0u8; uuid::fmt::Simple::LENGTH];
        let jti = uuid::Uuid::new_v4().simple().encode_lower(&mut jti);
        let iat = unix(now);
        let lifetime = i64::try_from(DEFAULT_WPT_LIFETIME.as_secs()).unwrap_or(60);
        let claims = WptClaims {
            aud,
            iat,
            exp: iat.saturating_add(lifetime),
            jti,
            wth: current.wth.as_str(),
            tth: tth.map(TokenHash::as_str),
        };
        match jsonwebtoken::encode(&current.header, &claims, &current.key) {
            Ok(token) => {
                let wpt = HeaderValue::try_from(token).ok()?;
                Some((current.wit.clone(), wpt))
            }
            Err(error) => {
                tracing::warn!(%error, "WPT signing failed: call sent without WIMSE headers");
                None
            }
        }
    }
}

/// A new proof key and a WIT binding it.
async fn fetch(identity: &dyn WorkloadIdentity) -> Result<Current, ProviderError> {
    let (key, jwk) = proof_key()?;
    let cnf_jwk = serde_json::to_string(&jwk)
        .map_err(|e| ProviderError::Invalid(format!("proof key JWK: {e}")))?;
    let response = identity
        .fetch_wit(&FetchWitRequest {
            audience: String::new(),
            cnf_jwk,
        })
        .await?;
    let wit = HeaderValue::try_from(response.token)
        .map_err(|_| ProviderError::Invalid("WIT is not a valid header value".into()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.typ = Some(WPT_TYP.to_owned());
    Ok(Current {
        wth: TokenHash::of(wit.as_bytes()),
        wit,
        header,
        key,
        expires_at: response.expires_at,
    })
}

/// A fresh P-256 key pair, generated here: the private half never leaves this process.
fn proof_key() -> Result<(EncodingKey, Jwk), ProviderError> {
    use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let failed = |e: &dyn fmt::Display| ProviderError::Invalid(format!("WPT key: {e}"));
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring::rand::SystemRandom::new(),
    )
    .map_err(|e| failed(&e))?;
    let key = EncodingKey::from_ec_der(pkcs8.as_ref());
    let jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(|e| failed(&e))?;
    Ok((key, jwk))
}

/// Replaces the WIT (with a new key) at half its remaining lifetime; after a failure,
/// retries sooner, keeping the current one until it expires.
async fn refresh(
    signer: Arc<WptSigner>,
    identity: Arc<dyn WorkloadIdentity>,
    stop: CancellationToken,
) {
    let mut wait = half_life(signer.current.load().expires_at);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match fetch(&*identity).await {
            Ok(current) => {
                wait = half_life(current.expires_at);
                signer.current.store(Arc::new(current));
            }
            Err(error) => {
                tracing::warn!(%error, "WIT refresh failed; retrying");
                wait =
                    (half_life(signer.current.load().expires_at) / 2).clamp(MIN_REFRESH, MAX_RETRY);
            }
        }
    }
}

fn half_life(expires_at: SystemTime) -> Duration {
    let left = expires_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (left / 2).max(MIN_REFRESH)
}
