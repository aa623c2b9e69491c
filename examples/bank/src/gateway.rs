//! gateway: the bank's front door, called by its customers over TLS without client
//! certificates. `#[ligand::service(gateway)]`: each request's access token (from the bank's
//! identity provider) is validated and exchanged for a Transaction Token minted here, the
//! customer becomes the `user` link the policy and the limiter see, and every call the
//! handlers make carries the minted token to transfers and accounts, which verify it.

use ligand::prelude::*;
use serde::Serialize;

use crate::api::{
    AccountsApi, AccountsApiClient, Amount, TransferRequest, TransfersApi, TransfersApiClient,
    downstream,
};
use crate::{ACCOUNTS, GATEWAY, TRANSFERS};

/// The gateway service.
#[derive(Debug, Clone, Copy)]
pub struct Gateway;

#[derive(Serialize)]
struct Rates {
    currency: &'static str,
    eur: f64,
    usd: f64,
}

#[ligand::service(gateway)]
impl Gateway {
    /// A transfer: gateway → transfers → fraud + accounts.
    #[post("/v1/transfers", action = "transfer")]
    async fn transfer(&self, ctx: Ctx, Json(t): Json<TransferRequest>) -> Response {
        match ctx.client::<TransfersApiClient>().create(&t).await {
            Ok(receipt) => Json(receipt).into_response(),
            Err(error) => downstream(&ctx, GATEWAY, TRANSFERS, &error),
        }
    }

    /// A debit sent straight to accounts, skipping transfers: the chain accounts' policy sees
    /// is gateway → accounts, which it refuses.
    #[post("/v1/shortcut/{id}/debit", action = "debit")]
    async fn shortcut(&self, ctx: Ctx, Path(id): Path<String>, Json(a): Json<Amount>) -> Response {
        match ctx.client::<AccountsApiClient>().debit(&id, &a).await {
            Ok(balance) => Json(balance).into_response(),
            Err(error) => downstream(&ctx, GATEWAY, ACCOUNTS, &error),
        }
    }

    /// An account's balance, read by accounts as its database user.
    #[get("/v1/accounts/{id}")]
    async fn account(&self, ctx: Ctx, Path(id): Path<String>) -> Response {
        match ctx.client::<AccountsApiClient>().get(&id).await {
            Ok(balance) => Json(balance).into_response(),
            Err(error) => downstream(&ctx, GATEWAY, ACCOUNTS, &error),
        }
    }

    /// Exchange rates: answered here, and rate limited hard (3 at once, then one per 5 s).
    #[get("/v1/rates")]
    async fn rates(&self) -> Json<Rates> {
        Json(Rates {
            currency: "CHF",
            eur: 1.07,
            usd: 1.13,
        })
    }
}
