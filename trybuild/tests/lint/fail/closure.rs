//! A socket opened inside a closure.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let bind = || std::net::UdpSocket::bind("127.0.0.1:0");
    let _ = bind();
    let _ = &server;
    Ok(())
}
