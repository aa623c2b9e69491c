use ligand::prelude::*;

struct Api;

#[ligand::service(gateway, gateway)]
impl Api {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
