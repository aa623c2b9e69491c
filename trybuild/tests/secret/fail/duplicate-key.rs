#[ligand::secret(path = "secret/data/db")]
struct DbCreds {
    password: String,
    #[secret(key = "password")]
    other: String,
}

fn main() {}
