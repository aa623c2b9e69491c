const PATH: &str = "secret/data/db";

#[ligand::secret(path = PATH)]
struct DbCreds {
    username: String,
}

fn main() {}
