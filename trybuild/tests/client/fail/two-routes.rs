use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[get("/accounts/{id}")]
    #[delete("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
