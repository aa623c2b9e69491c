//! The input document, built as regorus values straight from the request.
//!
//! The document is exactly `serde_json::to_value(&EvalRequest)` (a property test holds the
//! two together), without the JSON detour: strings the request shares (SPIFFE IDs, users)
//! become regorus strings by reference count, and the object keys are made once per thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use ligand_runtime::{Chain, EvalRequest, Link};
use regorus::Value;

/// The object keys of the input document, made once per thread and cloned by reference count.
struct Keys {
    chain: Value,
    peer: Value,
    resource: Value,
    action: Value,
    request: Value,
    service: Value,
    kind: Value,
    value: Value,
    name: Value,
    method: Value,
    path: Value,
    params: Value,
    workload: Value,
    user: Value,
    device: Value,
    host: Value,
    external_party: Value,
    verified: Value,
}

impl Keys {
    fn new() -> Self {
        Self {
            chain: "chain".into(),
            peer: "peer".into(),
            resource: "resource".into(),
            action: "action".into(),
            request: "request".into(),
            service: "service".into(),
            kind: "kind".into(),
            value: "value".into(),
            name: "name".into(),
            method: "method".into(),
            path: "path".into(),
            params: "params".into(),
            workload: "workload".into(),
            user: "user".into(),
            device: "device".into(),
            host: "host".into(),
            external_party: "external_party".into(),
            verified: "verified".into(),
        }
    }
}

thread_local! {
    static KEYS: Keys = Keys::new();
}

/// The input document for `request`.
pub(crate) fn input(request: &EvalRequest) -> Value {
    KEYS.with(|k| {
        let mut resource = BTreeMap::new();
        resource.insert(k.kind.clone(), string(&request.resource.kind));
        resource.insert(k.value.clone(), string(&request.resource.value));
        let mut action = BTreeMap::new();
        action.insert(k.name.clone(), string(&request.action.name));
        let mut line = BTreeMap::new();
        line.insert(k.method.clone(), string(request.request.method.as_str()));
        line.insert(k.path.clone(), string(&request.request.path));
        let params: BTreeMap<Value, Value> = request
            .request
            .params
            .iter()
            .map(|(name, value)| (string(name), string(value)))
            .collect();
        line.insert(k.params.clone(), Value::from(params));

        let mut doc = BTreeMap::new();
        doc.insert(k.chain.clone(), chain(k, &request.chain));
        doc.insert(k.peer.clone(), link(k, &request.peer));
        doc.insert(k.resource.clone(), Value::from(resource));
        doc.insert(k.action.clone(), Value::from(action));
        doc.insert(k.request.clone(), Value::from(line));
        doc.insert(k.service.clone(), shared(&request.service));
        Value::from(doc)
    })
}

fn string(s: &str) -> Value {
    Value::String(s.into())
}

fn shared(s: &Arc<str>) -> Value {
    Value::String(s.clone())
}

fn chain(k: &Keys, chain: &Chain) -> Value {
    Value::from(
        chain
            .links()
            .iter()
            .map(|l| link(k, l))
            .collect::<Vec<Value>>(),
    )
}

/// A link with only the dimensions it has and whether it was verified, as serde writes it.
fn link(k: &Keys, link: &Link) -> Value {
    let mut fields = BTreeMap::new();
    for (key, field) in [
        (&k.workload, &link.workload),
        (&k.user, &link.user),
        (&k.device, &link.device),
        (&k.host, &link.host),
        (&k.external_party, &link.external_party),
    ] {
        if let Some(value) = field {
            fields.insert(key.clone(), shared(value));
        }
    }
    fields.insert(k.verified.clone(), Value::Bool(link.verified));
    Value::from(fields)
}

#[cfg(test)]
mod tests {
    use ligand_runtime::{Action, PathParams, RequestLine, Resource};
    use proptest::prelude::*;

    use super::*;

    fn arb_field() -> impl Strategy<Value = Option<Arc<str>>> {
        proptest::option::of("[a-z:/.@ é\"\\\\]{0,12}".prop_map(Arc::from))
    }

    fn arb_link() -> impl Strategy<Value = Link> {
        (
            arb_field(),
            arb_field(),
            arb_field(),
            arb_field(),
            arb_field(),
            any::<bool>(),
        )
            .prop_map(|(workload, user, device, host, external_party, verified)| {
                let mut link = Link::default();
                link.workload = workload;
                link.user = user;
                link.device = device;
                link.host = host;
                link.external_party = external_party;
                link.verified = verified;
                link
            })
    }

    prop_compose! {
        fn arb_request()(
            chain in proptest::collection::vec(arb_link(), 0..4),
            peer in arb_link(),
            kind in "[a-z.]{0,10}",
            value in "[a-z/{}]{0,16}",
            action in "[A-Za-z]{0,8}",
            method in prop::sample::select(vec!["GET", "POST", "DELETE", "PATCH"]),
            path in "[a-z0-9/%]{0,16}",
            params in proptest::collection::vec(("[a-z]{1,3}", "[a-z0-9/% \"]{0,8}"), 0..4),
            service in "[a-z:/.]{0,24}",
        ) -> EvalRequest {
            let mut decoded = PathParams::new();
            for (name, value) in params {
                decoded.push(name, value);
            }
            EvalRequest::new(Chain::from(chain), peer, Resource::new(kind, value), Action::new(action), RequestLine::new(method.parse().unwrap_or_default(), path)
                    .with_params(decoded), service)
        }
    }

    proptest! {
        #[test]
        fn input_is_exactly_the_serialized_request(request in arb_request()) {
            let json = serde_json::to_value(&request).unwrap();
            prop_assert_eq!(input(&request), Value::from(json));
        }
    }
}
