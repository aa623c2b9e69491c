use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello/{name")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
