#[ligand::secret(path = "secret/data/db")]
struct DbCreds {
    username: String,
}

fn takes<T: serde::de::DeserializeOwned>() {}

fn main() {
    // Only the framework can build a secret struct from stored data.
    takes::<DbCreds>();
}
