use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/a/{id}/b/{id}")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
