use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get(HELLO)]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
