//! Nothing imported: route attributes written `ligand::get`, and user names that would
//! collide with the generated code's if it used names from the caller's scope.

#![allow(dead_code)]

struct State;
struct Arc;
struct Routes;
mod axum {}
mod core {}

struct Counter;

#[ligand::service]
impl Counter {
    #[ligand::get("/count/{n}")]
    async fn count(
        &self,
        __ligand_arg0: ligand::Ctx,
        this: ligand::extract::Path<u32>,
    ) -> ::std::string::String {
        let _ = __ligand_arg0;
        this.0.to_string()
    }

    #[::ligand::post("/count", action = "increment")]
    async fn increment(&self) -> &'static str {
        "ok"
    }
}

fn main() {
    fn assert_service<S: ligand::Service>() {}
    assert_service::<Counter>();
}
