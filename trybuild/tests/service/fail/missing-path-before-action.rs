use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get(action = "read")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
