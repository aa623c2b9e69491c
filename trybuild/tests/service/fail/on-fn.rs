#[ligand::service]
async fn hello() -> &'static str {
    "hello"
}

fn main() {}
