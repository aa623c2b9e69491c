use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[delete("/accounts")]
    async fn close(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
