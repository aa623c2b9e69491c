//! A module whose file the lint cannot find (here disabled by `#[cfg]`): it cannot vouch for
//! it, so it is an error rather than skipped.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[cfg(any())]
mod absent;

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = ();
    let _ = &server;
    Ok(())
}
