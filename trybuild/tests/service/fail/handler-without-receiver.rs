use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    async fn hello() -> &'static str {
        "hello"
    }
}

fn main() {}
