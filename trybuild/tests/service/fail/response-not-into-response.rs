use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    async fn hello(&self) -> u128 {
        1
    }
}

fn main() {}
