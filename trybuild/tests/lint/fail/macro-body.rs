//! A socket opened inside a macro call.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    println!("{:?}", std::net::TcpStream::connect("127.0.0.1:9").is_ok());
    let _ = &server;
    Ok(())
}
