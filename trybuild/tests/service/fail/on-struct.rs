#[ligand::service]
struct Api;

fn main() {}
