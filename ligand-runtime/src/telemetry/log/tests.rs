use super::*;

fn line(fields: impl FnOnce(&mut Fields<'_>) -> io::Result<()>) -> String {
    let mut out = Vec::new();
    fields(&mut Fields { out: &mut out }).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn plain_tokens_are_bare_and_anything_else_is_quoted_and_escaped() {
    assert_eq!(
        line(|f| f.str(key!("k"), "spiffe://a.org/x")),
        " k=spiffe://a.org/x"
    );
    assert_eq!(line(|f| f.str(key!("k"), "")), r#" k="""#);
    assert_eq!(line(|f| f.str(key!("k"), "two words")), r#" k="two words""#);
    assert_eq!(line(|f| f.str(key!("k"), "a=b")), r#" k="a=b""#);
    assert_eq!(
        line(|f| f.str(key!("k"), "say \"hi\"")),
        r#" k="say \"hi\"""#
    );
    assert_eq!(
        line(|f| f.str(key!("k"), "end\nforged=1")),
        r#" k="end\nforged=1""#
    );
    assert_eq!(
        line(|f| f.str(key!("k"), "\u{1b}[31m")),
        r#" k="\u{1b}[31m""#
    );
    assert_eq!(line(|f| f.str(key!("k"), "é")), r#" k="é""#);
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
    assert_eq!(line(|f| f.opt(key!("error"), None)), "");
    assert_eq!(line(|f| f.opt(key!("error"), Some("boom"))), " error=boom");
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
    assert_eq!(line(|f| f.count(key!("n"), 0)), " n=0");
    assert_eq!(line(|f| f.count(key!("n"), 1234567890)), " n=1234567890");
    assert_eq!(
        line(|f| f.count(key!("n"), u128::from(u64::MAX))),
        format!(" n={}", u64::MAX)
    );
    assert_eq!(
        line(|f| f.count(key!("n"), u128::from(u64::MAX) + 1)),
        format!(" n={}", u128::from(u64::MAX) + 1)
    );
    assert_eq!(
        line(|f| f.count(key!("n"), u128::MAX)),
        format!(" n={}", u128::MAX)
    );
    assert_eq!(line(|f| f.bool(key!("b"), true)), " b=true");
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

/// `time` as humantime writes it, which is what a line's timestamp must be.
fn humantime(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[test]
fn one_stamp_stays_right_across_second_day_month_and_year_boundaries() {
    let epoch = SystemTime::UNIX_EPOCH;
    let at = |secs: u64, micros: u32| epoch + Duration::new(secs, micros * 1000);
    // The last microsecond before each boundary and the first after it: a second, a day and
    // month (into December 2026), the ends of February in leap years (2000 and 2024) and in
    // 2100, which is not one, and a year (2026 to 2027).
    let boundaries: [u64; 7] = [
        1_796_000_000,
        1_796_083_200,
        951_782_400,
        951_868_800,
        1_709_251_200,
        4_107_542_400,
        1_798_761_600,
    ];
    let mut stamp = Stamp::default();
    let mut times = Vec::new();
    for boundary in boundaries {
        times.extend([
            at(boundary - 1, 0),
            at(boundary - 1, 999_999),
            at(boundary, 0),
            at(boundary, 1),
            // Back across it again: records reach the writer in queue order, which is not
            // quite time order.
            at(boundary - 1, 500_000),
            at(boundary, 999_999),
        ]);
    }
    for time in times {
        let ours = stamp.format(time);
        assert_eq!(std::str::from_utf8(&ours).unwrap(), humantime(time));
    }
}

#[test]
fn times_before_1970_are_the_epoch_with_or_without_a_stamp_in_use() {
    let epoch = SystemTime::UNIX_EPOCH;
    let mut stamp = Stamp::default();
    let before = [
        epoch - Duration::from_micros(1),
        epoch - Duration::from_secs(86_400 * 365),
    ];
    for time in before {
        assert_eq!(&stamp.format(time), b"1970-01-01T00:00:00.000000Z");
    }
    let later = epoch + Duration::new(1_796_000_000, 123_456_000);
    assert_eq!(
        std::str::from_utf8(&stamp.format(later)).unwrap(),
        humantime(later)
    );
    for time in before {
        assert_eq!(&stamp.format(time), b"1970-01-01T00:00:00.000000Z");
    }
    let first = epoch + Duration::from_micros(7);
    assert_eq!(&stamp.format(first), b"1970-01-01T00:00:00.000007Z");
}

#[test]
fn token_check_agrees_with_the_table_at_every_position() {
    let plain = "spiffe://bank.example/service/reporting";
    assert!(is_token(plain));
    assert!(!is_token(""));
    for at in 0..plain.len() {
        for b in 0..0x80u8 {
            let mut bytes = plain.as_bytes().to_vec();
            bytes[at] = b;
            let value = std::str::from_utf8(&bytes).unwrap();
            assert_eq!(is_token(value), TOKEN_BYTE[usize::from(b)], "{value:?}");
        }
    }
    assert!(!is_token("spiffe://bank.example/é"));
}

/// Lines as a whole, pinned: what a parser of the log sees.
#[test]
fn decision_and_rate_limit_lines_are_pinned() {
    use std::sync::Arc;

    use crate::chain::{Chain, Link};
    use crate::policy::EvalRequest;
    use crate::request::{Action, RequestLine, Resource};

    let peer = Link::workload("spiffe://bank.example/service/reporting");
    let input = Arc::new(EvalRequest::new(
        Chain::from(vec![peer.clone()]),
        peer,
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
        RequestLine::new(http::Method::GET, "/accounts/7"),
        "spiffe://bank.example/service/accounts",
    ));
    let request_id = crate::RequestId::default();
    let timestamp = SystemTime::UNIX_EPOCH + Duration::new(1_796_530_407, 461_486_999);
    let shared = Shared::default();
    let sink = LogLinesTelemetry::new(shared.clone());
    let mut decision = DecisionEvent {
        timestamp,
        request_id,
        input: input.clone(),
        allowed: true,
        cached: false,
        latency: Duration::from_micros(201),
        policy_latency: Duration::from_micros(90),
        policy_version: None,
        reason: Some(Arc::from("allowed")),
        error: None,
    };
    sink.record_decision(&decision).unwrap();
    decision.allowed = false;
    decision.cached = true;
    decision.reason = None;
    decision.error = Some("policy evaluation timed out after 5s".into());
    decision.latency = Duration::from_secs(5);
    decision.timestamp += Duration::from_secs(1);
    sink.record_decision(&decision).unwrap();
    sink.record_rate_limit(&RateLimitEvent {
        timestamp,
        request_id,
        input,
        allowed: false,
        latency: Duration::from_micros(3),
        current_rps: None,
        limit_rps: None,
        retry_after: Some(Duration::from_millis(250)),
        error: None,
    })
    .unwrap();
    sink.flush().unwrap();
    let text = String::from_utf8(shared.0.lock().unwrap().clone()).unwrap();
    assert_eq!(
        text,
        format!(
            "2026-12-06T04:13:27.461486Z audit decision request_id={request_id} \
             peer=spiffe://bank.example/service/reporting resource=/accounts/{{id}} action=GET \
             allowed=true cached=false reason=allowed latency_us=201\n\
             2026-12-06T04:13:28.461486Z audit decision request_id={request_id} \
             peer=spiffe://bank.example/service/reporting resource=/accounts/{{id}} action=GET \
             allowed=false cached=true error=\"policy evaluation timed out after 5s\" \
             latency_us=5000000\n\
             2026-12-06T04:13:27.461486Z audit rate_limit request_id={request_id} \
             peer=spiffe://bank.example/service/reporting resource=/accounts/{{id}} action=GET \
             retry_after_ms=250\n"
        )
    );
}
