use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[post("/accounts/{id}/debit")]
    async fn debit(&self, id: &str, amount: u64, memo: &str) -> Result<(), CallError>;
}

fn main() {}
