//! A socket opened inside an async block of a handler.

use ligand::prelude::*;

struct Api;

#[ligand::service]
impl Api {
    #[get("/dial")]
    async fn dial(&self) -> StatusCode {
        let connect = async { tokio::net::TcpStream::connect("127.0.0.1:9").await };
        match connect.await {
            Ok(_) => StatusCode::OK,
            Err(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

fn main() {}
