use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello", "/hi")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
