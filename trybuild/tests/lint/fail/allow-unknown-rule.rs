//! Rule ids are checked: a typo allows nothing.

#[ligand::allow(raw_sockets, reason = "health probe of the sidecar")]
fn probe() -> bool {
    std::net::TcpStream::connect("127.0.0.1:9").is_ok()
}

fn main() {
    let _ = probe();
}
