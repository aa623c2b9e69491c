//! Run with: LIGAND_CONFIG=examples/bank/config/accounts.toml cargo run -p bank --bin bank-service
//!
//! One bank service in a process of its own, on `ligand.toml` alone: the configuration's
//! identity (`[identity] spiffe_id` on the development identity, or the SVID that SPIRE or
//! `ligand-agent` issues through `[identity] socket`) chooses which of the four services this
//! process serves. `--validate` checks the configuration without serving.

#[ligand::main]
async fn main(server: ligand::Server) -> ligand::Result<()> {
    bank::serve_by_identity(&server).await
}
