use ligand::prelude::*;

#[ligand::client(service = "https://accounts.bank.example")]
pub trait Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
