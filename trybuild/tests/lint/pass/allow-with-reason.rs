//! Allowances with reasons: on a function, on an inline module, on a service impl (above
//! `#[ligand::service]` too) and in a `#[path]` module file. Each is listed in the generated
//! main and written to the audit log at startup.

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    // This suite only checks that the entry point compiles; running it stops here.
    std::process::exit(0)
}

#[ligand::allow(raw_socket, reason = "liveness probe of the local sidecar, no payload")]
fn probe() -> bool {
    std::net::TcpStream::connect("127.0.0.1:15021").is_ok()
}

#[ligand::allow(raw_socket, reason = "metrics push to the node agent over loopback")]
mod metrics {
    pub fn push() -> bool {
        std::net::UdpSocket::bind("127.0.0.1:0").is_ok()
    }
}

#[path = "helpers/legacy.rs"]
mod legacy;

struct Api;

#[ligand::allow(raw_socket, reason = "reports whether the sidecar is up")]
#[ligand::service]
impl Api {
    #[get("/sidecar")]
    async fn sidecar(&self) -> String {
        std::net::TcpStream::connect("127.0.0.1:15021").is_ok().to_string()
    }
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = (probe(), metrics::push(), legacy::ping());
    server.serve(Api).await?;
    Ok(())
}
