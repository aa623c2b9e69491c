use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[get("/accounts")]
    async fn list(&self, #[query] page: &str, #[query] filter: &str) -> Result<(), CallError>;
}

fn main() {}
