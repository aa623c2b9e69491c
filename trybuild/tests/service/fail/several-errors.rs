//! Every mistake is reported in one compile, each at its own span.

use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello/:name")]
    fn hello(&self) -> &'static str {
        "hello"
    }

    #[post("/hello", foo = "y")]
    async fn create(&mut self) -> &'static str {
        "created"
    }
}

fn main() {}
