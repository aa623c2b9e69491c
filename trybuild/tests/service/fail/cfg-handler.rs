use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[cfg(unix)]
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
