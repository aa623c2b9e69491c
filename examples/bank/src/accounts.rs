//! accounts: balances, debited and credited only on the path gateway → transfers → accounts
//! (its policy), read as the database user of its `#[ligand::secret]` credentials.

use std::collections::HashMap;
use std::sync::Mutex;

use ligand::prelude::*;

use crate::ACCOUNTS;
use crate::api::{Amount, Balance, chain_through};

/// The accounts service's database credentials, from the secrets provider (files on the
/// development identity, OpenBao in production). The password never leaves the service.
#[ligand::secret(path = "secret/data/accounts/db")]
struct DbCreds {
    username: String,
    password: SecretString,
}

/// The accounts service: balances in memory, behind credentials read from its secret.
#[derive(Debug)]
pub struct Accounts {
    balances: Mutex<HashMap<String, i64>>,
}

impl Accounts {
    /// The demo's accounts: alice 10000, bob 100, eve 500 (frozen by accounts' policy data),
    /// mallory 0.
    pub fn with_demo_balances() -> Self {
        let balances = [
            ("alice", 10_000),
            ("bob", 100),
            ("eve", 500),
            ("mallory", 0),
        ]
        .into_iter()
        .map(|(id, balance)| (id.to_owned(), balance))
        .collect();
        Self {
            balances: Mutex::new(balances),
        }
    }

    /// Applies `change` to the balance of `id` under the database credentials, refusing a
    /// balance below zero.
    async fn apply(&self, ctx: &Ctx, id: String, change: i64) -> Response {
        let db = match connect(ctx).await {
            Ok(db) => db,
            Err(response) => return response,
        };
        let balance = {
            // A poisoned lock means a panic mid-update: refuse rather than serve a guess.
            let Ok(mut balances) = self.balances.lock() else {
                return unavailable("the balance store is unavailable");
            };
            let Some(balance) = balances.get_mut(&id) else {
                return business(StatusCode::NOT_FOUND, "NO_SUCH_ACCOUNT", &id);
            };
            if *balance + change < 0 {
                return business(StatusCode::CONFLICT, "INSUFFICIENT_FUNDS", &id);
            }
            *balance += change;
            *balance
        };
        Json(Balance {
            id,
            balance,
            db_user: db.username,
            chain: chain_through(ctx, ACCOUNTS),
        })
        .into_response()
    }
}

#[ligand::service]
impl Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, ctx: Ctx, Path(id): Path<String>) -> Response {
        let db = match connect(&ctx).await {
            Ok(db) => db,
            Err(response) => return response,
        };
        let balance = match self.balances.lock() {
            Ok(balances) => balances.get(&id).copied(),
            Err(_) => return unavailable("the balance store is unavailable"),
        };
        match balance {
            Some(balance) => Json(Balance {
                id,
                balance,
                db_user: db.username,
                chain: chain_through(&ctx, ACCOUNTS),
            })
            .into_response(),
            None => business(StatusCode::NOT_FOUND, "NO_SUCH_ACCOUNT", &id),
        }
    }

    #[post("/accounts/{id}/debit", action = "debit")]
    async fn debit(&self, ctx: Ctx, Path(id): Path<String>, Json(a): Json<Amount>) -> Response {
        if a.amount <= 0 {
            return business(StatusCode::UNPROCESSABLE_ENTITY, "BAD_AMOUNT", &id);
        }
        self.apply(&ctx, id, -a.amount).await
    }

    #[post("/accounts/{id}/credit", action = "credit")]
    async fn credit(&self, ctx: Ctx, Path(id): Path<String>, Json(a): Json<Amount>) -> Response {
        if a.amount <= 0 {
            return business(StatusCode::UNPROCESSABLE_ENTITY, "BAD_AMOUNT", &id);
        }
        self.apply(&ctx, id, a.amount).await
    }
}

/// "Connects" to the database: reads the credentials through the audited secrets cache. A
/// real service would open its pool with them; the demo checks the password is there.
async fn connect(ctx: &Ctx) -> Result<DbCreds, Response> {
    match ctx.secret::<DbCreds>().await {
        Ok(db) if !db.password.expose_secret().is_empty() => Ok(db),
        Ok(_) => Err(unavailable("the database password is empty")),
        Err(_) => Err(unavailable("the database credentials are unavailable")),
    }
}

fn business(status: StatusCode, code: &str, account: &str) -> Response {
    let body = serde_json::json!({ "error_code": code, "account": account });
    (status, Json(body)).into_response()
}

fn unavailable(message: &str) -> Response {
    let body = serde_json::json!({ "error_code": "DATABASE_UNAVAILABLE", "error": message });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}
