use ligand::prelude::*;

trait Greeter {
    async fn hello(&self) -> &'static str;
}

struct Api;

#[ligand::service]
impl Greeter for Api {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
