use super::*;

fn line(fields: impl FnOnce(&mut Fields<'_>) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    fields(&mut Fields { out: &mut out }).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn plain_tokens_are_bare_and_anything_else_is_quoted_and_escaped() {
    assert_eq!(
        line(|f| f.str("k", "spiffe://a.org/x")),
        " k=spiffe://a.org/x"
    );
    assert_eq!(line(|f| f.str("k", "")), r#" k="""#);
    assert_eq!(line(|f| f.str("k", "two words")), r#" k="two words""#);
    assert_eq!(line(|f| f.str("k", "a=b")), r#" k="a=b""#);
    assert_eq!(line(|f| f.str("k", "say \"hi\"")), r#" k="say \"hi\"""#);
    assert_eq!(
        line(|f| f.str("k", "end\nforged=1")),
        r#" k="end\nforged=1""#
    );
    assert_eq!(line(|f| f.str("k", "\u{1b}[31m")), r#" k="\u{1b}[31m""#);
    assert_eq!(line(|f| f.str("k", "é")), r#" k="é""#);
}

#[test]
fn the_token_table_is_printable_ascii_but_quote_equals_and_backslash() {
    for b in 0..=u8::MAX {
        let expected = b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\');
        assert_eq!(TOKEN_BYTE[usize::from(b)], expected, "byte {b:#04x}");
    }
}

#[test]
fn absent_optional_fields_are_left_out() {
    assert_eq!(line(|f| f.opt("error", None)), "");
    assert_eq!(line(|f| f.opt("error", Some("boom"))), " error=boom");
}

/// A writer whose bytes the test can read after the sink has written them.
#[derive(Clone, Default)]
struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_health_transition_is_one_timestamped_line_once_flushed() {
    let shared = Shared::default();
    let sink = LogLinesTelemetry::new(shared.clone());
    sink.record_health_transition(&HealthTransitionEvent {
        timestamp: SystemTime::UNIX_EPOCH,
        kind: crate::health::ProviderKind::Policy,
        from: crate::health::State::Ready,
        to: crate::health::State::Degraded,
        cause: Some("bundle fetch failed".into()),
    })
    .unwrap();
    assert!(
        shared.0.lock().unwrap().is_empty(),
        "buffered until flushed"
    );
    sink.flush().unwrap();
    let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text,
        format!(
            "1970-01-01T00:00:00.000000Z audit health provider={} from={} to={} cause=\"bundle fetch failed\"\n",
            crate::health::ProviderKind::Policy,
            crate::health::State::Ready,
            crate::health::State::Degraded,
        )
    );
}

#[test]
fn timestamps_match_humantime_across_the_calendar() {
    let mut secs: u64 = 0;
    // Every 97 hours and some seconds from 1970 to past 2100: leap years, centuries (2000 is
    // a leap year, 2100 is not), month ends.
    while secs < 4_200_000_000 {
        for micros in [0, 1, 999_999] {
            let time = SystemTime::UNIX_EPOCH + Duration::new(secs, micros * 1000);
            let ours = rfc3339_micros(time);
            assert_eq!(
                std::str::from_utf8(&ours).unwrap(),
                humantime::format_rfc3339_micros(time).to_string(),
                "{secs}.{micros}"
            );
        }
        secs += 97 * 3600 + 13;
    }
}

#[test]
fn counts_are_decimal() {
    assert_eq!(line(|f| f.count("n", 0)), " n=0");
    assert_eq!(line(|f| f.count("n", 1234567890)), " n=1234567890");
    assert_eq!(
        line(|f| f.count("n", u128::from(u64::MAX))),
        format!(" n={}", u64::MAX)
    );
    assert_eq!(
        line(|f| f.count("n", u128::from(u64::MAX) + 1)),
        format!(" n={}", u128::from(u64::MAX) + 1)
    );
    assert_eq!(
        line(|f| f.count("n", u128::MAX)),
        format!(" n={}", u128::MAX)
    );
    assert_eq!(line(|f| f.bool("b", true)), " b=true");
}

#[test]
fn outcome_and_access_names_are_the_json_lines_names() {
    use crate::telemetry::{OutboundOutcome as O, SecretAccess as A};
    for outcome in [
        O::Success,
        O::ServerError,
        O::ConnectError,
        O::IdentityMismatch,
        O::Timeout,
        O::Refused,
    ] {
        assert_eq!(serde_json::json!(outcome), outcome_name(outcome));
    }
    for access in [A::Hit, A::Miss, A::Renewal, A::Revocation, A::Error] {
        assert_eq!(serde_json::json!(access), secret_access_name(access));
    }
}
