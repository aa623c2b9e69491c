use ligand::prelude::*;

#[get("/hello")]
async fn hello() -> &'static str {
    "hello"
}

fn main() {}
