//! A renamed import: the rename resolves to the banned path.

use std::net::TcpStream as Conn;

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = Conn::connect("127.0.0.1:9");
    let _ = &server;
    Ok(())
}
