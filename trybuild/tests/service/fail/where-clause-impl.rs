use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api
where
    Api: Send,
{
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
