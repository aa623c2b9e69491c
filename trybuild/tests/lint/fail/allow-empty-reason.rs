//! An empty reason is no reason.

#[ligand::allow(raw_socket, reason = " ")]
fn probe() -> bool {
    std::net::TcpStream::connect("127.0.0.1:9").is_ok()
}

fn main() {
    let _ = probe();
}
