use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello", action = "read", action = "list")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
