use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    type Account;

    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
