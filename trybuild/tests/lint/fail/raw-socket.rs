//! A raw socket in the entry point: reported at its span.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = std::net::TcpStream::connect("127.0.0.1:9");
    let _ = &server;
    Ok(())
}
