//! A fully-qualified path in a type, outside the entry point.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[allow(dead_code)]
struct Pool {
    conns: Vec<::std::net::TcpStream>,
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = &server;
    Ok(())
}
