use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts<T> {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<T, CallError>;
}

fn main() {}
