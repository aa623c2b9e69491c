use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[post("/accounts")]
    async fn create(&self, _: &str) -> Result<(), CallError>;
}

fn main() {}
