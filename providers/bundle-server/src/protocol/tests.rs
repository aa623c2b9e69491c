#![allow(clippy::unwrap_used, reason = "tests")]

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use proptest::prelude::*;

use super::{etag_matches, prefer_wait};

fn headers(name: &str, values: &[&str]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for value in values {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn prefer_wait_reads_opa_and_plain_forms() {
    assert_eq!(prefer_wait(&headers("prefer", &["wait=10"])), Some(10));
    assert_eq!(
        prefer_wait(&headers("prefer", &["modes=snapshot,delta;wait=30"])),
        Some(30)
    );
    assert_eq!(
        prefer_wait(&headers("prefer", &["respond-async", "Wait = \"5\""])),
        Some(5)
    );
    assert_eq!(prefer_wait(&headers("prefer", &["wait=soon"])), None);
    assert_eq!(prefer_wait(&headers("prefer", &["wait=-1"])), None);
    assert_eq!(prefer_wait(&HeaderMap::new()), None);
}

#[test]
fn if_none_match_is_weak_and_lenient_about_quotes() {
    let rev = "abc123";
    assert!(etag_matches(
        &headers("if-none-match", &["\"abc123\""]),
        rev
    ));
    assert!(etag_matches(
        &headers("if-none-match", &["W/\"abc123\""]),
        rev
    ));
    assert!(etag_matches(&headers("if-none-match", &["abc123"]), rev));
    assert!(etag_matches(
        &headers("if-none-match", &["\"old\", \"abc123\""]),
        rev
    ));
    assert!(etag_matches(&headers("if-none-match", &["*"]), rev));
    assert!(!etag_matches(
        &headers("if-none-match", &["\"abc12\""]),
        rev
    ));
    assert!(!etag_matches(&headers("if-none-match", &["\"\""]), rev));
    assert!(!etag_matches(&HeaderMap::new(), rev));
}

proptest! {
    /// Arbitrary header bytes never panic the parsers, and a wait is only ever read from a
    /// `wait=` item.
    #[test]
    fn parsers_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..200), rev in "[0-9a-f]{0,64}") {
        if let Ok(value) = HeaderValue::from_bytes(&raw) {
            let mut map = HeaderMap::new();
            map.insert(HeaderName::from_static("prefer"), value.clone());
            map.insert(http::header::IF_NONE_MATCH, value.clone());
            if prefer_wait(&map).is_some() {
                let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
                prop_assert!(text.contains("wait"));
            }
            let _ = etag_matches(&map, &rev);
        }
    }

    /// Any echoed ETag matches its own revision, and a different revision never does.
    #[test]
    fn echoed_etag_matches(rev in "[0-9a-f]{1,64}", other in "[0-9a-f]{1,64}") {
        let map = headers("if-none-match", &[&format!("\"{rev}\"")]);
        prop_assert!(etag_matches(&map, &rev));
        prop_assert_eq!(etag_matches(&map, &other), rev == other);
    }
}
