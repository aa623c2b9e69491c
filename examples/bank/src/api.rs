//! What the services send each other, the client traits they call each other through, and
//! the JSON answers for refusals that happened further down the chain.

use ligand::prelude::*;
use serde::{Deserialize, Serialize};

/// A transfer asked for at the gateway.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TransferRequest {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) amount: i64,
}

/// A completed transfer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Receipt {
    pub(crate) transfer_id: String,
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) amount: i64,
    pub(crate) from_balance: i64,
    pub(crate) fraud_score: u32,
    /// The workloads the debit went through, as accounts' policy saw them.
    pub(crate) chain: Vec<String>,
}

/// An amount to debit or credit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Amount {
    pub(crate) amount: i64,
}

/// An account's balance after a read, a debit or a credit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Balance {
    pub(crate) id: String,
    pub(crate) balance: i64,
    /// The database user the accounts service read the balance as (from its secret): the
    /// secret's non-secret half, shown so that a renewal can be seen.
    pub(crate) db_user: String,
    /// The chain the accounts service saw (workload SPIFFE IDs, the immediate peer last).
    pub(crate) chain: Vec<String>,
}

/// What transfers asks fraud about.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ScoreRequest {
    pub(crate) from: String,
    pub(crate) to: String,
    pub(crate) amount: i64,
}

/// Fraud's answer: 0 (clean) to 100 (certain fraud).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Score {
    pub(crate) score: u32,
    pub(crate) reason: String,
}

/// The score at and above which transfers refuses a transfer.
pub(crate) const FRAUD_THRESHOLD: u32 = 80;

#[ligand::client(service = "spiffe://bank.example/service/transfers")]
pub(crate) trait TransfersApi {
    #[post("/transfers", action = "create")]
    async fn create(&self, transfer: &TransferRequest) -> Result<Receipt, CallError>;
}

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub(crate) trait AccountsApi {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Balance, CallError>;

    #[post("/accounts/{id}/debit", action = "debit")]
    async fn debit(&self, id: &str, amount: &Amount) -> Result<Balance, CallError>;

    #[post("/accounts/{id}/credit", action = "credit")]
    async fn credit(&self, id: &str, amount: &Amount) -> Result<Balance, CallError>;
}

#[ligand::client(service = "spiffe://bank.example/service/fraud")]
pub(crate) trait FraudApi {
    #[post("/score", action = "score")]
    async fn score(&self, request: &ScoreRequest) -> Result<Score, CallError>;
}

/// The workloads of this request's chain (the immediate peer last), then this service.
pub(crate) fn chain_through(ctx: &Ctx, own: &str) -> Vec<String> {
    let mut hops: Vec<String> = ctx
        .chain()
        .links()
        .iter()
        .filter_map(|link| link.principal().map(str::to_owned))
        .collect();
    if hops.last().map(String::as_str) != Some(own) {
        hops.push(own.to_owned());
    }
    hops
}

/// The answer for a call this service made that failed: the callee's refusal passed back
/// with who refused, its `error_code` and `request_id`, and the chain the call went along.
///
/// A refusal further down is a 424 Failed Dependency (not a 403 of this service's own policy,
/// which a caller would read as this service refusing it); a business answer of the callee
/// (such as 409 or 422) is passed back as it came.
pub(crate) fn downstream(ctx: &Ctx, own: &str, callee: &str, error: &CallError) -> Response {
    let mut chain = chain_through(ctx, own);
    chain.push(callee.to_owned());
    let (status, code) = match error {
        CallError::Status { status, body, .. } if status.is_client_error() => {
            return (
                *status,
                [("content-type", "application/json")],
                body.clone(),
            )
                .into_response();
        }
        CallError::Denied { .. } | CallError::RateLimited { .. } => {
            (StatusCode::FAILED_DEPENDENCY, "DOWNSTREAM_REFUSED")
        }
        _ => (StatusCode::BAD_GATEWAY, "DOWNSTREAM_UNAVAILABLE"),
    };
    let body = serde_json::json!({
        "error_code": code,
        "error": error.to_string(),
        "request_id": ctx.request_id(),
        "refused_by": callee,
        "downstream_error_code": error.code(),
        "downstream_request_id": error.request_id(),
        "chain": chain,
    });
    (status, Json(body)).into_response()
}
