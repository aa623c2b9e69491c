#[ligand::secret(path = "secret/data/partner/api")]
struct ApiKey(String);

fn main() {}
