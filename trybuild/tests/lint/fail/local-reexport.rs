//! A re-export through a local module: `net::TcpStream` is `std::net::TcpStream`.

mod net {
    pub use std::net::*;
}

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = net::TcpStream::connect("127.0.0.1:9");
    let _ = &server;
    Ok(())
}
