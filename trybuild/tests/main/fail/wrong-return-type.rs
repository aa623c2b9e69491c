use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> Result<(), String> {
    let _ = &server;
    Ok(())
}
