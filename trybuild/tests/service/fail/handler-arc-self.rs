use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    async fn hello(self: std::sync::Arc<Self>) -> &'static str {
        "hello"
    }
}

fn main() {}
