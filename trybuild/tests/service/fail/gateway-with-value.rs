use ligand::prelude::*;

struct Api;

#[ligand::service(gateway = true)]
impl Api {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
