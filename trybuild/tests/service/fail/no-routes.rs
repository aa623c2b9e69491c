struct Api;

#[ligand::service]
impl Api {
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
