//! An empty reason is no reason.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::allow(raw_socket, reason = " ")]
fn probe() -> bool {
    std::net::TcpStream::connect("127.0.0.1:9").is_ok()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = probe();
    let _ = &server;
    Ok(())
}
