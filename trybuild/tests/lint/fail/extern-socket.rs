//! A socket through a foreign function declared by hand.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

unsafe extern "C" {
    fn socket(domain: i32, kind: i32, protocol: i32) -> i32;
}

fn dial() -> i32 {
    // SAFETY: socket(2) takes no pointers.
    unsafe { socket(2, 1, 0) }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial();
    let _ = &server;
    Ok(())
}
