//! A test WIT issuer and workload proof keys: real ES256 keys generated at run time, tokens
//! signed with them exactly as a test asks (valid or not).

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::identity::{FetchWitRequest, FetchWitResponse};
use crate::wimse::{TokenHash, WIT_TYP, WPT_TYP, WimseConfig};

/// The issuer [`WitIssuer`] writes into its tokens.
pub const TEST_WIT_ISSUER: &str = "https://wit.test.invalid";

/// One ES256 key: its signing half and its public JWK.
struct EsKey {
    encoding: EncodingKey,
    jwk: Jwk,
}

impl EsKey {
    #[allow(
        clippy::expect_used,
        reason = "test double: a broken backend fails the test"
    )]
    fn generate() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate P-256 key");
        let encoding = EncodingKey::from_ec_der(&pair.serialize_der());
        let jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("public JWK");
        Self { encoding, jwk }
    }

    #[allow(clippy::expect_used, reason = "test double")]
    fn sign(&self, typ: Option<&str>, kid: Option<&str>, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = typ.map(str::to_owned);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Signs Workload Identity Tokens with a key generated when it is created;
/// [`config`](Self::config) verifies them.
pub struct WitIssuer {
    kid: String,
    key: EsKey,
}

impl fmt::Debug for WitIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WitIssuer").field("kid", &self.kid).finish()
    }
}

impl WitIssuer {
    /// A new issuer with a fresh ES256 key named `kid`.
    pub fn new(kid: &str) -> Self {
        let mut key = EsKey::generate();
        key.jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            key,
        }
    }

    /// The public key set, as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.key.jwk.clone()],
        }
    }

    /// The public key set, JSON-encoded.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.jwks()).unwrap_or_default()
    }

    /// A verifier configuration trusting this issuer.
    pub fn config(&self) -> WimseConfig {
        WimseConfig::new(self.jwks()).issuers([TEST_WIT_ISSUER])
    }

    /// Valid WIT claims for `sub` binding `cnf_jwk` (a JWK JSON object), issued now and
    /// valid five minutes.
    pub fn claims(&self, sub: &str, cnf_jwk: &Value) -> Value {
        let now = unix_now();
        json!({
            "iss": TEST_WIT_ISSUER,
            "sub": sub,
            "iat": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
            "cnf": { "jwk": cnf_jwk },
        })
    }

    /// Signs `claims` exactly as given, with `typ: wit+jwt` and this issuer's `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_typ(Some(WIT_TYP), claims)
    }

    /// Signs `claims` with the JOSE `typ` given (or none) and this issuer's `kid`.
    pub fn sign_with_typ(&self, typ: Option<&str>, claims: &Value) -> String {
        self.key.sign(typ, Some(&self.kid), claims)
    }

    /// A valid WIT for `sub` binding `key`.
    pub fn wit(&self, sub: &str, key: &WorkloadKey) -> String {
        self.sign(&self.claims(sub, &key.jwk()))
    }

    /// Answers a [`FetchWitRequest`] as an identity source would, for `sub`.
    #[allow(clippy::expect_used, reason = "test double")]
    pub fn fetch(&self, sub: &str, request: &FetchWitRequest) -> FetchWitResponse {
        let jwk: Value = serde_json::from_str(&request.cnf_jwk).expect("cnf_jwk is JSON");
        let claims = self.claims(sub, &jwk);
        let exp = claims["exp"].as_u64().unwrap_or_default();
        FetchWitResponse {
            token: self.sign(&claims),
            expires_at: UNIX_EPOCH + Duration::from_secs(exp),
        }
    }
}

/// A workload's proof key: what a WIT's `cnf.jwk` binds and what signs its WPTs.
pub struct WorkloadKey {
    key: EsKey,
}

impl fmt::Debug for WorkloadKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkloadKey")
    }
}

impl Default for WorkloadKey {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkloadKey {
    /// A fresh ES256 key.
    pub fn new() -> Self {
        Self {
            key: EsKey::generate(),
        }
    }

    /// The public key as a JWK JSON object.
    pub fn jwk(&self) -> Value {
        serde_json::to_value(&self.key.jwk).unwrap_or_default()
    }

    /// Valid WPT claims for a request to `aud` carrying `wit`, valid `lifetime` from `now`
    /// (seconds since the Unix epoch), with a fresh `jti`.
    pub fn claims(&self, wit: &str, aud: &str, now: u64, lifetime: u64) -> Value {
        json!({
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "jti": uuid::Uuid::new_v4().to_string(),
            "wth": hash(wit),
        })
    }

    /// Signs `claims` exactly as given, with `typ: wpt+jwt`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_with_typ(Some(WPT_TYP), claims)
    }

    /// Signs `claims` with the JOSE `typ` given (or none).
    pub fn sign_with_typ(&self, typ: Option<&str>, claims: &Value) -> String {
        self.key.sign(typ, None, claims)
    }
}

/// The base64url SHA-256 of `token`, as `wth`, `tth`, `ath` carry it.
pub fn hash(token: &str) -> String {
    TokenHash::of(token.as_bytes()).as_str().to_owned()
}

/// A [`Clock`](crate::Clock) that stands still until told to move.
#[derive(Debug)]
pub struct ManualClock {
    now: std::sync::Mutex<SystemTime>,
}

impl ManualClock {
    /// A clock reading `now`.
    pub fn new(now: SystemTime) -> Self {
        Self {
            now: std::sync::Mutex::new(now),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now += by;
    }

    /// The time it reads, in whole seconds since the Unix epoch.
    pub fn unix(&self) -> u64 {
        crate::Clock::now(self)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

impl crate::Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
