//! Grouped imports: each banned leaf is reported.

use std::{
    io,
    net::{IpAddr, TcpListener, UdpSocket},
};

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _: Option<(io::ErrorKind, IpAddr, TcpListener, UdpSocket)> = None;
    let _ = &server;
    Ok(())
}
