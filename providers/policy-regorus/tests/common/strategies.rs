//! Random requests in the shapes the framework builds, over the bench policies' identities,
//! routes and actions.

use ligand_runtime::{Action, Chain, EvalRequest, Link, RequestLine, Resource};
use proptest::prelude::*;

pub const WORKLOADS: &[&str] = &[
    "spiffe://bank.example/service/gateway",
    "spiffe://bank.example/service/transfers",
    "spiffe://bank.example/service/fraud",
    "spiffe://bank.example/service/reporting",
    "spiffe://bank.example/service/ops",
    "spiffe://bank.example/service/legacy-batch",
    "spiffe://other.example/service/gateway",
    "spiffe://example.org/service/caller",
    "spiffe://example.org/service/intruder",
];
pub const USERS: &[&str] = &[
    "alice@bank.example",
    "mallory@bank.example",
    "bob@bank.example",
];
pub const ROUTES: &[&str] = &[
    "/accounts/{id}",
    "/accounts/{id}/debit",
    "/accounts/{id}/credit",
    "/transfers",
    "/admin/reset",
    "/hello/{name}",
    "/reports/{id}",
];
pub const ACTIONS: &[&str] = &["GET", "POST", "debit", "credit", "reset", "DELETE"];

pub fn arb_link() -> impl Strategy<Value = Link> {
    (
        proptest::option::of(prop::sample::select(WORKLOADS)),
        proptest::option::of(prop::sample::select(USERS)),
        proptest::option::weighted(0.1, Just("partner.example")),
    )
        .prop_map(|(workload, user, external_party)| {
            let mut link = Link::default();
            link.workload = workload.map(Into::into);
            link.user = user.map(Into::into);
            link.external_party = external_party.map(Into::into);
            link
        })
}

prop_compose! {
    pub fn arb_request()(
        upstream in proptest::collection::vec(arb_link(), 0..6),
        peer in prop::sample::select(WORKLOADS),
        route in prop::sample::select(ROUTES),
        action in prop::sample::select(ACTIONS),
        method in prop::sample::select(vec!["GET", "POST", "DELETE"]),
        id in 0u32..5,
        service in prop::sample::select(vec![
            "spiffe://bank.example/service/accounts",
            "spiffe://example.org/service/hello",
        ]),
    ) -> EvalRequest {
        let peer = Link::workload(peer);
        let mut chain = Chain::from(upstream);
        chain.push(peer.clone());
        EvalRequest::new(chain, peer, Resource::http_path(route), Action::new(action), RequestLine::new(method.parse().unwrap(), route.replace("{id}", &id.to_string())), service)
    }
}
