//! A direct Redis client in a module file. The module is disabled here (this suite has no
//! redis dependency), but the lint reads source files, so disabled code is linted too.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[cfg(any())]
#[path = "helpers/limiter.rs"]
mod limiter;

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = &server;
    Ok(())
}
