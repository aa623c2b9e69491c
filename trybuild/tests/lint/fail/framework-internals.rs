//! The framework's private module, used by hand.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    ligand::__private::init_logging();
    let _ = &server;
    Ok(())
}
