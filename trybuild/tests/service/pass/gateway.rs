//! A gateway service: the same routes and `Ctx`, served to external callers by access token.
use ligand::prelude::*;

struct Edge;

#[ligand::service(gateway)]
impl Edge {
    #[get("/me")]
    async fn me(&self, ctx: Ctx) -> String {
        let sub = ctx.txn().map(|txn| txn.sub.to_string()).unwrap_or_default();
        format!("{sub} via {:?}", ctx.peer())
    }
}

fn assert_service<S: ligand::Service>() {}

fn main() {
    assert_service::<Edge>();
}
