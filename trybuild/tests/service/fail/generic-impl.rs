use ligand::prelude::*;

struct Api<T>(T);

#[ligand::service]
impl<T: Send + Sync + 'static> Api<T> {
    #[get("/hello")]
    async fn hello(&self) -> &'static str {
        "hello"
    }
}

fn main() {}
