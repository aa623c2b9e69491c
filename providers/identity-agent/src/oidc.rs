//! The OIDC discovery document and JWKS, so that verifiers outside SPIFFE (cloud IAM, API
//! gateways) can trust the agent's JWT-SVIDs and WITs. Public keys only: plain HTTP on loopback.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::jwk::JwkSet;
use serde_json::{Value, json};

use crate::jwt::JwtAuthority;

/// The path of the JWKS, relative to the issuer.
pub const JWKS_PATH: &str = "/keys";
/// The path of the discovery document, relative to the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// The discovery document of `jwt`'s issuer.
pub fn discovery_document(jwt: &JwtAuthority) -> Value {
    let issuer = jwt.issuer().trim_end_matches('/');
    json!({
        "issuer": jwt.issuer(),
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [jwt.algorithm().as_str()],
        "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "cnf"],
    })
}

pub(crate) fn router(jwt: Arc<JwtAuthority>) -> Router {
    Router::new()
        .route(DISCOVERY_PATH, get(discovery))
        .route(JWKS_PATH, get(keys))
        .with_state(jwt)
}

async fn discovery(State(jwt): State<Arc<JwtAuthority>>) -> Json<Value> {
    Json(discovery_document(&jwt))
}

async fn keys(State(jwt): State<Arc<JwtAuthority>>) -> Json<JwkSet> {
    Json(jwt.jwks())
}
