#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::io;
use std::sync::Arc;

use super::connector::certificate_failure;
use crate::tls::SvidError;

#[test]
fn certificate_failures_are_found_through_io_errors() {
    let svid = SvidError::UnexpectedId {
        expected: "spiffe://a/x".into(),
        actual: "spiffe://a/y".into(),
    };
    let rustls = rustls::Error::InvalidCertificate(rustls::CertificateError::Other(
        rustls::OtherError(Arc::new(svid)),
    ));
    let io = io::Error::other(rustls);
    let reason = certificate_failure(&io);
    assert!(
        reason
            .as_deref()
            .is_some_and(|r| r.contains("spiffe://a/y")),
        "{reason:?}"
    );
    assert_eq!(certificate_failure(&io::Error::other("refused")), None);
}
