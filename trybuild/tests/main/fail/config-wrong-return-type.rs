use ligand::prelude::*;

async fn config() -> String {
    String::new()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = &server;
    Ok(())
}
