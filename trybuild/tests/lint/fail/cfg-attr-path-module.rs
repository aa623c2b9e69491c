//! A module file chosen by `#[cfg_attr(…, path = "…")]`: read like a plain `#[path]`.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[cfg_attr(all(), path = "helpers/dial.rs")]
mod dial;

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial::dial();
    let _ = &server;
    Ok(())
}
