use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn run(server: Server) -> ligand::Result<()> {
    let _ = &server;
    Ok(())
}
