//! transfers: asks fraud for a score, refuses a risky transfer (a business answer, 422), and
//! otherwise debits and credits through accounts.

use ligand::prelude::*;

use crate::api::{
    AccountsApi, AccountsApiClient, Amount, FRAUD_THRESHOLD, FraudApi, FraudApiClient, Receipt,
    ScoreRequest, TransferRequest, downstream,
};
use crate::{ACCOUNTS, FRAUD, TRANSFERS};

/// The transfers service.
#[derive(Debug, Clone, Copy)]
pub struct Transfers;

#[ligand::service]
impl Transfers {
    #[post("/transfers", action = "create")]
    async fn create(&self, ctx: Ctx, Json(t): Json<TransferRequest>) -> Response {
        let request = ScoreRequest {
            from: t.from.clone(),
            to: t.to.clone(),
            amount: t.amount,
        };
        let score = match ctx.client::<FraudApiClient>().score(&request).await {
            Ok(score) => score,
            Err(error) => return downstream(&ctx, TRANSFERS, FRAUD, &error),
        };
        if score.score >= FRAUD_THRESHOLD {
            let body = serde_json::json!({
                "error_code": "FRAUD_BLOCKED",
                "error": format!("refused: {}", score.reason),
                "score": score.score,
                "request_id": ctx.request_id(),
            });
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
        let accounts = ctx.client::<AccountsApiClient>();
        let amount = Amount { amount: t.amount };
        let debited = match accounts.debit(&t.from, &amount).await {
            Ok(balance) => balance,
            Err(error) => return downstream(&ctx, TRANSFERS, ACCOUNTS, &error),
        };
        if let Err(error) = accounts.credit(&t.to, &amount).await {
            // The demo keeps no journal to compensate from: say so rather than hide it.
            return downstream(&ctx, TRANSFERS, ACCOUNTS, &error);
        }
        Json(Receipt {
            transfer_id: ctx.request_id().to_owned(),
            from: t.from,
            to: t.to,
            amount: t.amount,
            from_balance: debited.balance,
            fraud_score: score.score,
            chain: debited.chain,
        })
        .into_response()
    }
}
