#[ligand::client(service = "spiffe://bank.example/service/accounts")]
pub struct Accounts;

fn main() {}
