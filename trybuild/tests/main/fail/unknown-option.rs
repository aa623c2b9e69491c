use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config, threads = 4)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = &server;
    Ok(())
}
