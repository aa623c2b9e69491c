//! A same-crate `macro_rules!` that splices a metavariable into a socket path.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

macro_rules! dial {
    ($module:ident) => {
        std::$module::TcpStream::connect("127.0.0.1:9").is_ok()
    };
}

fn dial() -> bool {
    dial!(net)
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial();
    let _ = &server;
    Ok(())
}
