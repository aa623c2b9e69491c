use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[put("/accounts/{id}")]
    async fn update(&self, account: &str) -> Result<(), CallError>;
}

fn main() {}
