use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[post("/hello")]
    async fn hello(&mut self) -> &'static str {
        "hello"
    }
}

fn main() {}
