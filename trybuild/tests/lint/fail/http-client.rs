//! An HTTP client type in the entry point.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _client: Option<hyper_util::client::legacy::Builder> = None;
    let _ = &server;
    Ok(())
}
