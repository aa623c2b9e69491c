//! Run with: cargo run -p hello
//!
//! One Ligand service and an in-process caller, over real mTLS 1.3 on loopback. The caller is
//! another workload with its own SVID; it makes an allowed call, a call the policy denies and
//! calls until the rate limiter refuses, and prints what happened each time.
//!
//! Identities come from the testkit's in-memory CA: a development identity, not for production.

use std::sync::OnceLock;
use std::time::Duration;

use ligand::prelude::*;
use ligand::testkit::{AllowList, FakeIdentity, PeerClient, PeerResponse, ScriptedLimiter, TestCa};
use ligand::{BoxError, Config, HttpBinding, SpiffeId};
use serde::Serialize;

const SERVICE: &str = "spiffe://hello.example/service/hello";
const CALLER: &str = "spiffe://hello.example/service/caller";

/// The development CA both workloads get their SVIDs from.
fn dev_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| TestCa::new("hello.example"))
}

struct Hello;

#[derive(Serialize)]
struct Greeting {
    greeting: String,
    caller: String,
    request_id: String,
}

#[ligand::service]
impl Hello {
    #[get("/hello/{name}")]
    async fn hello(&self, ctx: Ctx, Path(name): Path<String>) -> Json<Greeting> {
        Json(Greeting {
            greeting: format!("hello, {name}"),
            caller: ctx.caller().principal().unwrap_or_default().to_owned(),
            request_id: ctx.request_id().to_owned(),
        })
    }

    #[post("/admin/reset", action = "reset")]
    async fn reset(&self) -> StatusCode {
        StatusCode::NO_CONTENT
    }
}

/// The service's configuration: its identity, who may do what, and three calls per caller.
async fn config() -> Result<Config, BoxError> {
    let ca = dev_ca();
    Ok(Config::builder()
        .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
        .policy(AllowList::new().allow(CALLER, "GET", "/hello/{name}"))
        .rate_limiter(ScriptedLimiter::budget(3, Duration::from_secs(1)))
        .binding(HttpBinding::new("127.0.0.1:0"))
        .build())
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let caller = server.clone();
    tokio::spawn(async move {
        if let Err(error) = call(&caller).await {
            eprintln!("caller failed: {error}");
        }
        // Done: shut the service down in order; `serve` below then returns.
        caller.close().await;
    });
    server.serve(Hello).await?;
    Ok(())
}

/// The other workload: calls the service over mTLS and prints each outcome.
async fn call(server: &Server) -> Result<(), BoxError> {
    let addr = server
        .local_addr()
        .await
        .ok_or("the service never listened")?;
    println!("service {SERVICE} listening on {addr} (mTLS 1.3, client certificates required)");
    let ca = dev_ca();
    let expect = SpiffeId::new(SERVICE)?;
    let client = PeerClient::new(&ca.context(ca.svid(CALLER)), Some(&expect))?;
    println!("caller  {CALLER}\n");

    show(
        "1. GET /hello/ada: allowed by policy",
        &client.get(addr, "/hello/ada").await?,
    );
    show(
        "2. POST /admin/reset: denied by policy",
        &client.post(addr, "/admin/reset", Vec::new()).await?,
    );
    show(
        "3. GET /hello/ada: third request of three allowed",
        &client.get(addr, "/hello/ada").await?,
    );
    show(
        "4. GET /hello/ada: over the rate limit",
        &client.get(addr, "/hello/ada").await?,
    );
    Ok(())
}

fn show(what: &str, response: &PeerResponse) {
    let retry = response
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(" (Retry-After: {v}s)"))
        .unwrap_or_default();
    println!(
        "{what}\n  → {}{retry} {}\n",
        response.status,
        response.text()
    );
}
