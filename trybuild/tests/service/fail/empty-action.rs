use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello", action = "")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
