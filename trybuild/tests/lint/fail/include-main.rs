//! `#[ligand::main]` in an `include!`d file: the scan still starts at the target's root, this
//! file.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

fn dial() -> bool {
    std::net::TcpStream::connect("127.0.0.1:9").is_ok()
}

include!("helpers/entry.rs");
