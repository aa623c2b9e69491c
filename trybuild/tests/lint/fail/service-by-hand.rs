//! `Service` implemented by hand: a router without the enforcement pipeline's guarantees.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

struct Hand;

impl ligand::Service for Hand {
    fn __ligand_routes(self) -> ligand::__private::Routes<Self> {
        ligand::__private::Routes::new(self)
    }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    server.serve(Hand).await?;
    Ok(())
}
