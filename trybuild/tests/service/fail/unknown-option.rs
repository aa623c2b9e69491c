use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello", foo = "y")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
