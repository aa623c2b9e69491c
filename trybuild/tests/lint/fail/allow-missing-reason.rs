//! An allowance must say why.

#[ligand::allow(raw_socket)]
fn probe() -> bool {
    std::net::TcpStream::connect("127.0.0.1:9").is_ok()
}

fn main() {
    let _ = probe();
}
