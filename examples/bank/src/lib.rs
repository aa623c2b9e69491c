//! Run with: cargo run -p bank
//!
//! The bank demo: four Ligand services on loopback, each a `#[ligand::service]` calling the
//! next through `#[ligand::client]` traits over mTLS 1.3 with SPIFFE identities:
//!
//! ```text
//! caller ──▶ gateway ──▶ transfers ──▶ fraud      (score)
//!                              └──────▶ accounts  (debit, credit; DB credentials as a secret)
//! ```
//!
//! [`world`] starts them in one process on the development identity (the shared development
//! CA in a development folder, short-lived SVIDs that rotate while the demo runs), their
//! policies from `policy/<service>/`, the governor limiter, file secrets and JSON audit logs.
//! [`scenario`] drives them through every step the README of this example describes and
//! returns a [`Report`](scenario::Report) of step | expected | got. [`serve_by_identity`]
//! serves one service in a process of its own, chosen by the SPIFFE ID its configuration
//! gives it (the `bank-service` binary).

#![forbid(unsafe_code)]

mod accounts;
mod api;
mod fraud;
mod gateway;
pub mod scenario;
mod transfers;
pub mod world;

pub use self::accounts::Accounts;
pub use self::fraud::Fraud;
pub use self::gateway::Gateway;
pub use self::transfers::Transfers;

use ligand::Server;

/// The bank's trust domain.
pub const TRUST_DOMAIN: &str = "bank.example";
/// The gateway's SPIFFE ID: the trust boundary, called by the bank's people.
pub const GATEWAY: &str = "spiffe://bank.example/service/gateway";
/// The transfers service's SPIFFE ID.
pub const TRANSFERS: &str = "spiffe://bank.example/service/transfers";
/// The accounts service's SPIFFE ID.
pub const ACCOUNTS: &str = "spiffe://bank.example/service/accounts";
/// The fraud service's SPIFFE ID.
pub const FRAUD: &str = "spiffe://bank.example/service/fraud";
/// The secret holding the accounts service's database credentials.
pub const DB_SECRET: &str = "secret/data/accounts/db";

/// The four services by short name, in the order they start (callees first).
pub const SERVICES: [(&str, &str); 4] = [
    ("fraud", FRAUD),
    ("accounts", ACCOUNTS),
    ("transfers", TRANSFERS),
    ("gateway", GATEWAY),
];

/// Serves, on `server`, the bank service its identity names (the SPIFFE ID from the
/// configuration: `[identity] spiffe_id`, `LIGAND_SPIFFE_ID`, or the SVID SPIRE issues).
///
/// # Errors
/// An identity that is none of the four services, or the serving error.
pub async fn serve_by_identity(server: &Server) -> ligand::Result<()> {
    let id = server.spiffe_id().to_string();
    match id.as_str() {
        GATEWAY => server.serve(Gateway).await?,
        TRANSFERS => server.serve(Transfers).await?,
        ACCOUNTS => server.serve(Accounts::with_demo_balances()).await?,
        FRAUD => server.serve(Fraud).await?,
        other => {
            return Err(ligand::Error::Other(
                format!(
                    "{other} is not a bank service: set [identity] spiffe_id to one of \
                     {GATEWAY}, {TRANSFERS}, {ACCOUNTS}, {FRAUD}"
                )
                .into(),
            ));
        }
    }
    Ok(())
}
