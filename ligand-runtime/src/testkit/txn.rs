//! A test Transaction Token Service: an ES256 key generated at run time, its JWKS, and
//! tokens signed with it.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::txn::{TXN_TOKEN_TYP, TxnTokenConfig};

/// The issuer [`TxnIssuer`] writes into its tokens.
pub const TEST_TXN_ISSUER: &str = "https://txn.test.invalid";

/// Signs Transaction Tokens with a key generated when it is created; [`config`](Self::config)
/// verifies them.
pub struct TxnIssuer {
    kid: String,
    pem: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl fmt::Debug for TxnIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TxnIssuer").field("kid", &self.kid).finish()
    }
}

impl TxnIssuer {
    /// A new issuer with a fresh ES256 key named `kid`.
    ///
    /// # Panics
    ///
    /// If key generation fails (a broken crypto backend).
    #[allow(
        clippy::expect_used,
        reason = "test double: a broken backend fails the test"
    )]
    pub fn new(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate P-256 key");
        let pem = pair.serialize_pem();
        let encoding = EncodingKey::from_ec_pem(pem.as_bytes()).expect("PKCS#8 P-256 key");
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).expect("public JWK");
        jwk.common.key_id = Some(kid.to_owned());
        Self {
            kid: kid.to_owned(),
            pem,
            encoding,
            jwk,
        }
    }

    /// The private key, PKCS#8 PEM: for tests that sign other kinds of tokens with it, or
    /// hand it to a [`TxnMinter`](crate::TxnMinter).
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// The public key set, as a JWKS document.
    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// The public key set, JSON-encoded.
    pub fn jwks_json(&self) -> String {
        serde_json::to_string(&self.jwks()).unwrap_or_default()
    }

    /// A verifier configuration for this issuer's tokens, issuer allow-listed.
    pub fn config(&self) -> TxnTokenConfig {
        TxnTokenConfig::new(self.jwks()).issuers([TEST_TXN_ISSUER])
    }

    /// Signs `claims` exactly as given (`typ: txntoken+jwt`, this issuer's `kid`).
    ///
    /// # Panics
    ///
    /// If signing fails (claims that are not a JSON object).
    #[allow(clippy::expect_used, reason = "test double")]
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(TXN_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Signs `claims` exactly as given as an identity provider's access token (`typ: at+jwt`,
    /// RFC 9068, this issuer's `kid`): what a gateway's caller presents as its bearer token.
    ///
    /// # Panics
    ///
    /// If signing fails (claims that are not a JSON object).
    #[allow(clippy::expect_used, reason = "test double")]
    pub fn sign_access_token(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }

    /// Valid claims for a token for trust domain `trust_domain` about `sub`, issued now and
    /// valid five minutes: `iss`, `aud`, `iat`, `exp`, `txn` (a fresh UUID), `sub`, `scope`.
    pub fn claims(&self, trust_domain: &str, sub: &str) -> Value {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        json!({
            "iss": TEST_TXN_ISSUER,
            "aud": trust_domain,
            "iat": now,
            "exp": now + 300,
            "txn": uuid::Uuid::new_v4().to_string(),
            "sub": sub,
            "scope": "read",
        })
    }

    /// A valid token: [`claims`](Self::claims) signed.
    pub fn token(&self, trust_domain: &str, sub: &str) -> String {
        self.sign(&self.claims(trust_domain, sub))
    }
}
