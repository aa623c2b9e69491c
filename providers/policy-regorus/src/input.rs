//! The input document, built as regorus values straight from the request.
//!
//! The document is exactly `serde_json::to_value(&EvalRequest)` (a property test holds the
//! two together), without the JSON detour: strings the request shares (SPIFFE IDs, users)
//! become regorus strings by reference count, and the object keys are made once per thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use ligand_runtime::{Chain, EvalRequest, Link, TxnClaims};
use regorus::Value;

/// The object keys of the input document, made once per thread and cloned by reference count.
struct Keys {
    chain: Value,
    peer: Value,
    resource: Value,
    action: Value,
    request: Value,
    service: Value,
    txn: Value,
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
    txn_id: Value,
    sub: Value,
    scope: Value,
    req_wl: Value,
    iss: Value,
    iat: Value,
    exp: Value,
    tctx: Value,
    rctx: Value,
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
            txn: "txn".into(),
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
            txn_id: "txn".into(),
            sub: "sub".into(),
            scope: "scope".into(),
            req_wl: "req_wl".into(),
            iss: "iss".into(),
            iat: "iat".into(),
            exp: "exp".into(),
            tctx: "tctx".into(),
            rctx: "rctx".into(),
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
        if let Some(claims) = &request.txn {
            doc.insert(k.txn.clone(), txn(k, claims));
        }
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

/// The Transaction Token claims, absent optional ones left out as serde leaves them out. The
/// strings are shared with the request; `tctx` and `rctx` convert value by value, with no
/// JSON text in between.
fn txn(k: &Keys, claims: &TxnClaims) -> Value {
    let mut fields = BTreeMap::new();
    fields.insert(k.txn_id.clone(), shared(&claims.txn));
    fields.insert(k.sub.clone(), shared(&claims.sub));
    for (key, field) in [
        (&k.scope, &claims.scope),
        (&k.req_wl, &claims.req_wl),
        (&k.iss, &claims.iss),
    ] {
        if let Some(value) = field {
            fields.insert(key.clone(), shared(value));
        }
    }
    fields.insert(k.iat.clone(), Value::from(claims.iat));
    fields.insert(k.exp.clone(), Value::from(claims.exp));
    for (key, field) in [(&k.tctx, &claims.tctx), (&k.rctx, &claims.rctx)] {
        if let Some(value) = field {
            fields.insert(key.clone(), Value::from(value.clone()));
        }
    }
    Value::from(fields)
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
        fn arb_txn()(
            txn in "[a-z0-9-]{1,12}",
            sub in "[a-z@. é\"]{1,12}",
            scope in arb_field(),
            req_wl in arb_field(),
            iss in arb_field(),
            iat in any::<i64>(),
            exp in any::<i64>(),
            tctx in proptest::option::of(("[a-z]{1,4}", any::<i32>(), "[a-z ]{0,6}")),
            rctx in proptest::option::of("[a-z0-9.]{0,12}"),
        ) -> TxnClaims {
            let mut claims = TxnClaims::new(txn, sub, iat, exp);
            claims.scope = scope;
            claims.req_wl = req_wl;
            claims.iss = iss;
            claims.tctx = tctx.map(|(k, n, s)| serde_json::json!({ k: n, "nested": {"s": s, "list": [n, s]} }));
            claims.rctx = rctx.map(|ip| serde_json::json!({"req_ip": ip}));
            claims
        }
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
            txn in proptest::option::of(arb_txn()),
        ) -> EvalRequest {
            let mut decoded = PathParams::new();
            for (name, value) in params {
                decoded.push(name, value);
            }
            EvalRequest::new(Chain::from(chain), peer, Resource::new(kind, value), Action::new(action), RequestLine::new(method.parse().unwrap_or_default(), path)
                    .with_params(decoded), service).with_txn(txn.map(Arc::new))
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
