//! The handler every scenario serves, so that the servers differ only in what surrounds it.

use axum::Json;
use axum::extract::Path;
use serde::Serialize;

/// The route every server serves.
pub(crate) const ROUTE: &str = "/accounts/{id}";

/// The concrete path the fixed-id loads request.
pub(crate) const FIXED_PATH: &str = "/accounts/12345678";

/// The path pattern of the high-cardinality load: oha draws a random 8-digit id per request.
pub(crate) const RANDOM_PATH: &str = "/accounts/[0-9]{8}";

/// One account: the small JSON body (about 90 bytes) every request gets.
#[derive(Debug, Serialize)]
pub(crate) struct Account {
    /// The id from the path.
    pub(crate) id: String,
    /// The owner.
    pub(crate) owner: &'static str,
    /// The currency of the balance.
    pub(crate) currency: &'static str,
    /// The balance in cents.
    pub(crate) balance_cents: i64,
}

/// The account `id`: the same work in every scenario.
pub(crate) fn account(id: String) -> Account {
    Account {
        id,
        owner: "alice@bank.example",
        currency: "EUR",
        balance_cents: 1_234_567,
    }
}

/// The axum handler of the plain server and of the sidecar's backend.
pub(crate) async fn get_account(Path(id): Path<String>) -> Json<Account> {
    Json(account(id))
}
