//! A socket behind a chain of sixteen re-exports, longer than the resolver used to follow (it
//! then reported nothing). Longer chains than it follows now are errors (`[unverified]`).

use ligand::prelude::*;

async fn config() -> Result<ligand::Config, ligand::BoxError> {
    unimplemented!()
}

mod m0 {
    pub use super::m1::n;
}
mod m1 {
    pub use super::m2::n;
}
mod m2 {
    pub use super::m3::n;
}
mod m3 {
    pub use super::m4::n;
}
mod m4 {
    pub use super::m5::n;
}
mod m5 {
    pub use super::m6::n;
}
mod m6 {
    pub use super::m7::n;
}
mod m7 {
    pub use super::m8::n;
}
mod m8 {
    pub use super::m9::n;
}
mod m9 {
    pub use super::m10::n;
}
mod m10 {
    pub use super::m11::n;
}
mod m11 {
    pub use super::m12::n;
}
mod m12 {
    pub use super::m13::n;
}
mod m13 {
    pub use super::m14::n;
}
mod m14 {
    pub use super::m15::n;
}
mod m15 {
    pub use super::m16::n;
}
mod m16 {
    pub use std::net as n;
}

fn dial() -> bool {
    m0::n::TcpStream::connect("127.0.0.1:9").is_ok()
}

#[ligand::main(config = config)]
async fn main(server: Server) -> ligand::Result<()> {
    let _ = dial();
    let _ = &server;
    Ok(())
}
