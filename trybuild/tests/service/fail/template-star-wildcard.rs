use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/files/*rest")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
