//! A module file declared with `#[path]`: reported with the file, line and column.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[path = "helpers/dial.rs"]
mod dial;

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial::dial();
    let _ = &server;
    Ok(())
}
