//! Inside a service the route attributes still resolve like any attribute: import them.

struct Api;

#[ligand::service]
impl Api {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
