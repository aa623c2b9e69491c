//! A client trait called from a handler (`ctx.client`) and from background work
//! (`server.client`), its futures spawned onto tokio, so they must be `Send`; a test double
//! implements the same trait.

use ligand::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize, Serialize)]
pub struct Account {
    id: String,
}

#[derive(Serialize)]
pub struct Debit {
    amount: u64,
}

#[derive(Deserialize)]
pub struct Receipt {
    pub balance: u64,
}

#[derive(Serialize)]
pub struct Page {
    after: Option<String>,
}

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    /// Doc comments stay on the method.
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<Account, CallError>;

    #[post("/accounts/{id}/debit", action = "debit")]
    async fn debit(&self, id: &str, body: &Debit) -> Result<Receipt, CallError>;

    #[get("/accounts")]
    async fn list(&self, #[query] page: &Page) -> Result<Vec<Account>, CallError>;

    #[delete("/accounts/{id}")]
    async fn close(&self, id: u64) -> Result<(), CallError>;

    /// Calls for one account stay on one endpoint under the ring_hash balancer.
    #[get("/accounts/{id}/history")]
    async fn history(&self, #[hash_key] id: u64) -> Result<Vec<Receipt>, CallError>;

    #[ligand::put("/files/{*rest}")]
    async fn upload(&self, rest: String, body: Vec<u8>) -> Result<(), CallError>;
}

/// Code written against the trait, testable with a double.
async fn balance_after_debit(accounts: &impl Accounts, id: &str) -> Result<u64, CallError> {
    let receipt = accounts.debit(id, &Debit { amount: 5 }).await?;
    Ok(receipt.balance)
}

struct Fake;

impl Accounts for Fake {
    async fn get(&self, id: &str) -> Result<Account, CallError> {
        Ok(Account { id: id.to_owned() })
    }
    async fn debit(&self, _id: &str, _body: &Debit) -> Result<Receipt, CallError> {
        Ok(Receipt { balance: 7 })
    }
    async fn list(&self, _page: &Page) -> Result<Vec<Account>, CallError> {
        Ok(Vec::new())
    }
    async fn close(&self, _id: u64) -> Result<(), CallError> {
        Ok(())
    }
    async fn history(&self, _id: u64) -> Result<Vec<Receipt>, CallError> {
        Ok(Vec::new())
    }
    async fn upload(&self, _rest: String, _body: Vec<u8>) -> Result<(), CallError> {
        Ok(())
    }
}

struct Payments;

#[ligand::service]
impl Payments {
    #[get("/payments/{id}")]
    async fn payment(&self, ctx: Ctx, Path(id): Path<String>) -> String {
        let accounts = ctx.client::<AccountsClient>();
        let task = tokio::spawn(async move { accounts.get(&id).await });
        match task.await {
            Ok(Ok(account)) => format!("{account:?}"),
            Ok(Err(err)) => err.to_string(),
            Err(_) => String::new(),
        }
    }

    #[get("/balance/{id}")]
    async fn balance(&self, ctx: Ctx, Path(id): Path<String>) -> String {
        let accounts = ctx.client::<AccountsClient>();
        let first = accounts.get("a").await.map(|account| account.id);
        let balance = balance_after_debit(&accounts, &id).await;
        format!("{first:?} {balance:?}")
    }
}

fn assert_send<T: Send>(value: T) -> T {
    value
}

async fn reconcile(server: Server) {
    let accounts = server.client::<AccountsClient>();
    let page = Page { after: None };
    let listed = assert_send(accounts.list(&page)).await;
    let closed = assert_send(accounts.close(7)).await;
    let uploaded = assert_send(accounts.upload("a/b".to_owned(), vec![1])).await;
    let _ = (listed, closed, uploaded);
}

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    // This suite only checks that the entry point compiles; running it stops here.
    std::process::exit(0)
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    assert_eq!(balance_after_debit(&Fake, "a").await.ok(), Some(7));
    assert_eq!(
        <AccountsClient as ligand::Client>::SERVICE,
        "spiffe://bank.example/service/accounts"
    );
    tokio::spawn(reconcile(server.clone()));
    server.serve(Payments).await?;
    Ok(())
}
