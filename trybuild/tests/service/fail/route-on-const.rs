use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    const GREETING: &'static str = "hello";

    #[get("/hi")]
    async fn hi(&self) -> &'static str {
        Self::GREETING
    }
}

fn main() {}
