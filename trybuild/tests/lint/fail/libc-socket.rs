//! A socket through libc, in `unsafe`.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

fn dial() -> i32 {
    // SAFETY: socket(2) takes no pointers.
    unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial();
    let _ = &server;
    Ok(())
}
