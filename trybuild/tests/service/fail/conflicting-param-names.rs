use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/accounts/{id}")]
    async fn account(&self, Path(id): Path<String>) -> String {
        id
    }

    #[delete("/accounts/{account}")]
    async fn close(&self, Path(account): Path<String>) -> String {
        account
    }
}

fn main() {}
