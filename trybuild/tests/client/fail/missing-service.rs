use ligand::prelude::*;

#[ligand::client]
pub trait Accounts {
    #[get("/accounts/{id}")]
    async fn get(&self, id: &str) -> Result<(), CallError>;
}

fn main() {}
