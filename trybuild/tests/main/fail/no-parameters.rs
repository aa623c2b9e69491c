async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
async fn main() -> ligand::Result<()> {
    Ok(())
}
