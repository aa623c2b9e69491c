use ligand::prelude::*;

struct Api;

impl Api {
    #[post("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
