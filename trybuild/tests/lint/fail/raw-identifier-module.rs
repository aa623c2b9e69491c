//! A module named with a raw identifier: `mod r#dyn;` is the file `dyn.rs`.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

mod helpers {
    pub mod r#dyn;
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = helpers::r#dyn::dial();
    let _ = &server;
    Ok(())
}
