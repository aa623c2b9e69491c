use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    async fn hello(&self, name: u128) -> String {
        name.to_string()
    }
}

fn main() {}
