//! A glob import of `std::net`: the addresses are fine, the sockets are not.

use std::net::*;

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let _ = UdpSocket::bind("127.0.0.1:0");
    let _ = &server;
    Ok(())
}
