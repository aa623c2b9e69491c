//! A module file with its own allowance.

#[ligand::allow(raw_socket, reason = "legacy plaintext health port, loopback only")]
pub fn ping() -> bool {
    std::net::TcpStream::connect("127.0.0.1:8081").is_ok()
}
