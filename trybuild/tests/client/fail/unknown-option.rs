use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts", timeout = 5)]
pub trait Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
