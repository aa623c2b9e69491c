//! A service written against the prelude: extractors, an action override, a helper method.

use ligand::Service;
use ligand::prelude::*;
use serde::{Deserialize, Serialize};

struct Bank {
    currency: &'static str,
}

#[derive(Deserialize)]
struct Transfer {
    to: String,
    amount: u64,
}

#[derive(Serialize)]
struct Receipt {
    to: String,
    amount: String,
}

#[ligand::service]
impl Bank {
    /// Doc comments and other attributes stay on the method.
    #[get("/accounts/{id}")]
    async fn account(&self, ctx: Ctx, Path(id): Path<String>) -> String {
        format!("account {id} seen by {}", ctx.caller().principal().unwrap_or_default())
    }

    #[post("/accounts/{id}/transfers", action = "transfer")]
    async fn transfer(
        &self,
        _ctx: Ctx,
        Path(_id): Path<String>,
        Json(body): Json<Transfer>,
    ) -> Json<Receipt> {
        Json(Receipt {
            to: body.to,
            amount: self.format(body.amount),
        })
    }

    #[delete("/accounts/{id}")]
    async fn close(&self, Path(id): Path<u64>) -> impl IntoResponse {
        (StatusCode::ACCEPTED, format!("closing {id}"))
    }

    #[put("/files/{*rest}")]
    async fn upload(&self, Path(rest): Path<String>, body: String) -> Response {
        format!("{rest}: {} bytes", body.len()).into_response()
    }

    #[patch("/")]
    async fn root(&self) -> StatusCode {
        StatusCode::NO_CONTENT
    }

    /// Not a route: stays a plain method, callable from the handlers.
    fn format(&self, amount: u64) -> String {
        format!("{amount} {}", self.currency)
    }
}

fn main() {
    let bank = Bank { currency: "EUR" };
    assert_eq!(bank.format(3), "3 EUR");
    let routes = format!("{:?}", bank.__ligand_routes());
    assert_eq!(
        routes,
        r#"[("/accounts/{id}", "GET"), ("/accounts/{id}/transfers", "transfer"), ("/accounts/{id}", "DELETE"), ("/files/{*rest}", "PUT"), ("/", "PATCH")]"#,
    );
}
