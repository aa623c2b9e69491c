//! `#[ligand::main]` with the configuration built by a function in another module.

use ligand::prelude::*;

mod settings {
    pub async fn load() -> Result<ligand::Config, ligand::BoxError> {
        // This suite only checks that the entry point compiles; running it stops here.
        std::process::exit(0)
    }
}

struct Hello;

#[ligand::service]
impl Hello {
    #[get("/hello/{name}")]
    async fn hello(&self, Path(name): Path<String>) -> String {
        format!("hello {name}")
    }
}

#[ligand::main(config = settings::load)]
async fn main(server: Server) -> ligand::Result<()> {
    server.serve(Hello).await?;
    Ok(())
}
