//! An inline module.

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
    let _ = outbound::dial();
    let _ = &server;
    Ok(())
}
