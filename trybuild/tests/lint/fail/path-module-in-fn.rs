//! A `#[path]` module declared inside a function body.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

fn dial() -> bool {
    #[path = "helpers/dial.rs"]
    mod dial;
    dial::dial().is_ok()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial();
    let _ = &server;
    Ok(())
}
