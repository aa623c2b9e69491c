use ligand::prelude::*;

struct Api;

#[ligand::service(name = "api")]
impl Api {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
