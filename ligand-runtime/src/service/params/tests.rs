#![allow(clippy::unwrap_used, reason = "tests")]

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::RawPathParams;
use axum::extract::rejection::RawPathParamsRejection;
use axum::routing::get;
use proptest::prelude::*;
use tower::ServiceExt as _;

use super::*;

fn params(pairs: &[(&str, &str)]) -> Read {
    let mut params = PathParams::new();
    for (name, value) in pairs {
        params.push(*name, *value);
    }
    Read::Params(params)
}

#[test]
fn whole_segment_parameters_are_read_and_decoded() {
    let plan = ParamPlan::new("/accounts/{id}/owners/{name}");
    assert_eq!(
        plan.read("/accounts/42/owners/ada%20l%C3%B6w"),
        params(&[("id", "42"), ("name", "ada löw")])
    );
    assert_eq!(ParamPlan::new("/health").read("/health"), params(&[]));
    assert_eq!(ParamPlan::new("/").read("/"), params(&[]));
    assert_eq!(
        ParamPlan::new("/{first}/{second}").read("//x"),
        params(&[("first", ""), ("second", "x")])
    );
}

#[test]
fn a_parameter_that_is_not_utf8_once_decoded_is_refused() {
    assert_eq!(
        ParamPlan::new("/accounts/{id}").read("/accounts/%FF"),
        Read::NotUtf8
    );
}

#[test]
fn a_path_that_does_not_line_up_is_left_to_the_router() {
    let plan = ParamPlan::new("/accounts/{id}");
    for path in [
        "/accounts/42/",
        "/accounts/42/x",
        "/accounts",
        "/account/42",
        "accounts/42",
        "",
    ] {
        assert_eq!(plan.read(path), Read::Router, "{path:?}");
    }
}

#[test]
fn templates_other_than_literals_and_whole_parameters_are_left_to_the_router() {
    for template in [
        "/files/{*rest}",
        "/v{version}/x",
        "/{id}.json",
        "/{{literal}}/{id}",
        "/{}",
        "accounts/{id}",
    ] {
        let plan = ParamPlan::new(template);
        assert!(plan.segments.is_none(), "{template}");
        assert_eq!(plan.read("/a/b"), Read::Router, "{template}");
    }
}

/// What axum's own extraction gives the handler of `template` for `path`: `None` when the
/// route does not match it.
fn axum_reads(template: &'static str, path: &str) -> Option<Read> {
    let seen = Arc::new(Mutex::new(None));
    let handler = {
        let seen = seen.clone();
        move |raw: Result<RawPathParams, RawPathParamsRejection>| async move {
            let read = match raw {
                Ok(raw) => {
                    let mut params = PathParams::new();
                    for (name, value) in &raw {
                        params.push(name, value);
                    }
                    Read::Params(params)
                }
                Err(_) => Read::NotUtf8,
            };
            *seen.lock().unwrap() = Some(read);
        }
    };
    let router = Router::new().route(template, get(handler));
    let request = http::Request::get(path)
        .body(axum::body::Body::empty())
        .ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(router.oneshot(request)).unwrap();
    seen.lock().unwrap().take()
}

const TEMPLATES: [&str; 5] = [
    "/accounts/{id}",
    "/accounts/{id}/owners/{name}",
    "/{first}/{second}",
    "/a/{x}/b",
    "/files/{*rest}",
];

/// A path segment: text, percent-escapes (some not UTF-8, one cut short) and characters
/// outside ASCII, or the templates' literals.
fn segment() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9._~-]{1,4}",
            "%[0-9A-Fa-f]{2}",
            Just("%C3%A9".to_owned()),
            Just("%".to_owned()),
            Just("é".to_owned()),
            Just("accounts".to_owned()),
            Just("owners".to_owned()),
            Just("files".to_owned()),
            Just("a".to_owned()),
            Just("b".to_owned()),
        ],
        0..4,
    )
    .prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Wherever the router matches a template, a plan of literals and whole parameters reads
    /// exactly what axum's extraction gives the handler; any other plan leaves it to the
    /// router.
    #[test]
    fn the_plan_reads_what_axum_gives_the_handler(
        template in prop::sample::select(&TEMPLATES[..]),
        segments in prop::collection::vec(segment(), 1..5),
    ) {
        let path = format!("/{}", segments.join("/"));
        let Some(expected) = axum_reads(template, &path) else {
            return Ok(());
        };
        let read = ParamPlan::new(template).read(&path);
        if template.contains('*') {
            prop_assert_eq!(read, Read::Router);
        } else {
            prop_assert_eq!(read, expected, "{} {}", template, path);
        }
    }
}
