use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[delete("/accounts/{id}")]
    async fn close(&self, id: &str);
}

fn main() {}
