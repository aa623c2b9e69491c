use ligand::prelude::*;

#[ligand::client(service = "spiffe://bank.example/service/sessions")]
pub trait Sessions {
    #[get("/sessions/{user}/{id}")]
    async fn get(&self, #[hash_key] user: &str, #[hash_key] id: &str) -> Result<(), CallError>;
}

fn main() {}
