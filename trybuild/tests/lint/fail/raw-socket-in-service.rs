//! A tokio listener inside a handler: `#[ligand::service]` lints its own impl.

use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/open")]
    async fn open(&self) -> StatusCode {
        match tokio::net::TcpListener::bind("0.0.0.0:8080").await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

fn main() {}
