use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[post("/hello")]
    async fn hello(&self, body: impl Into<String>) -> String {
        body.into()
    }
}

fn main() {}
