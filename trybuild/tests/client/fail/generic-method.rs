use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[get("/accounts/{id}")]
    async fn get<T>(&self, id: &str) -> Result<T, CallError>;
}

fn main() {}
