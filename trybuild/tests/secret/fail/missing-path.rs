#[ligand::secret]
struct DbCreds {
    username: String,
}

fn main() {}
