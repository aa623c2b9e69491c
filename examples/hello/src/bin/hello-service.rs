//! Run with: cargo run -p hello --bin hello-service (from `examples/hello`, for its `policy/`)
//!
//! The greeting served to callers outside the process, on `ligand.toml` with embedded
//! defaults: with no file, a development identity from the CA in the user's development
//! folder, regorus over `policy/`, the governor limiter. Once listening, it writes client
//! credentials for the caller `spiffe://ligand.local/user/dev` and logs a `curl` line using
//! them. `--validate` checks the configuration without serving; `--help` says the rest.

use ligand::prelude::*;
use serde::Serialize;

struct Hello;

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    caller: String,
}

#[ligand::service]
impl Hello {
    #[get("/hello/{name}")]
    async fn hello(&self, ctx: Ctx, Path(name): Path<String>) -> Json<Greeting> {
        Json(Greeting {
            greeting: format!("hello, {name}"),
            caller: ctx.caller().principal().unwrap_or_default().to_owned(),
        })
    }
}

#[ligand::main]
async fn main(server: Server) -> ligand::Result<()> {
    server.serve(Hello).await?;
    Ok(())
}
