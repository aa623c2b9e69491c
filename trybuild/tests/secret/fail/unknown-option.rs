#[ligand::secret(path = "secret/data/db", ttl = 60)]
struct DbCreds {
    username: String,
}

fn main() {}
