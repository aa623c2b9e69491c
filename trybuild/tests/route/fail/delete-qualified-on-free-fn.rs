#[ligand::delete("/hello")]
async fn hello() -> &'static str {
    "hello"
}

fn main() {}
