#[ligand::secret(path = "secret/data/db")]
enum Creds {
    Password(String),
}

fn main() {}
