//! `extern crate x as y`: `y::net` is still `tokio::net`.

extern crate tokio as rt;

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = rt::net::UdpSocket::bind("127.0.0.1:0").await;
    let _ = &server;
    Ok(())
}
