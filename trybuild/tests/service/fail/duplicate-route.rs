use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello/{name}")]
    async fn hello(&self, Path(name): Path<String>) -> String {
        name
    }

    #[get("/hello/{name}")]
    async fn hi(&self, Path(name): Path<String>) -> String {
        name
    }
}

fn main() {}
