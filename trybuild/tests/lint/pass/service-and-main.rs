//! A service and its entry point: addresses from `std::net`, tokio tasks and the framework's
//! own paths are all legitimate.

use std::net::SocketAddr;

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    // This suite only checks that the entry point compiles; running it stops here.
    std::process::exit(0)
}

struct Hello;

#[ligand::service]
impl Hello {
    #[get("/hello/{name}")]
    async fn hello(&self, ctx: Ctx, Path(name): Path<String>) -> String {
        let task = tokio::spawn(async move { format!("hello {name}") });
        format!("{} from {}", task.await.unwrap_or_default(), ctx.caller().principal().unwrap_or_default())
    }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let addr: Option<SocketAddr> = server.local_addr().await;
    let _ = addr;
    server.serve(Hello).await?;
    Ok(())
}
