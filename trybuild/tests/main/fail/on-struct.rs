async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

#[ligand::main(config = config)]
struct Main;

fn main() {}
