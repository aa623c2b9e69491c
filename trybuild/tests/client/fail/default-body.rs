use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub trait Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError> {
        let _ = id;
        Ok(())
    }
}

fn main() {}
