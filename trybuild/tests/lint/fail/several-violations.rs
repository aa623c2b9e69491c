//! Every violation is reported in one build.

use std::net::UdpSocket;

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

mod outbound {
    pub fn dial() -> bool {
        std::net::TcpStream::connect("127.0.0.1:9").is_ok()
    }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = UdpSocket::bind("127.0.0.1:0");
    let _ = tokio::net::TcpListener::bind("127.0.0.1:0").await;
    let _ = outbound::dial();
    let _ = &server;
    Ok(())
}
