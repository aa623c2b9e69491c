use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    #[post("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
