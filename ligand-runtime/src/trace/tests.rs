//! The `traceparent` parser against the specification's rules, and on arbitrary input.
#![allow(clippy::unwrap_used, reason = "tests")]

use proptest::prelude::*;

use super::{HexId, TraceId, TraceParent, hex8, ratio_threshold, sampled_under};

const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

#[test]
fn a_valid_header_parses_and_renders_back() {
    let parent = TraceParent::parse(VALID.as_bytes()).unwrap();
    assert_eq!(
        parent.trace_id().as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(parent.span_id().as_str(), "00f067aa0ba902b7");
    assert!(parent.sampled());
    assert_eq!(parent.to_header(), VALID);
}

#[test]
fn malformed_headers_are_refused() {
    for bad in [
        "",
        "00",
        // uppercase hex
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01",
        // all-zero ids
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        // version ff
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        // version 00 with trailing data
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        // wrong separators and lengths
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        "0-04bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
        // a future version followed by something other than '-'
        "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x",
    ] {
        assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
    }
}

#[test]
fn a_future_version_is_read_as_version_00() {
    let future = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-09-what-the-future-holds";
    let parent = TraceParent::parse(future.as_bytes()).unwrap();
    assert_eq!(
        parent.trace_id().as_str(),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(parent.flags(), 1, "only the flags version 00 knows");
    let exact = "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert!(TraceParent::parse(exact.as_bytes()).is_some());
}

#[test]
fn a_child_keeps_the_trace_and_a_root_starts_one() {
    let parent = TraceParent::parse(VALID.as_bytes()).unwrap();
    let child = parent.child();
    assert_eq!(child.trace_id(), parent.trace_id());
    assert_ne!(child.span_id(), parent.span_id());
    assert_eq!(child.flags(), parent.flags());
    let root = TraceParent::new_root();
    assert_ne!(root.trace_id(), parent.trace_id());
    assert_eq!(TraceParent::parse(root.to_header().as_bytes()), Some(root));
}

#[test]
fn the_ratio_samples_trace_ids_by_their_low_63_bits() {
    let id = |low: u64| {
        let mut bytes = [0xab_u8; 16];
        bytes[8..].copy_from_slice(&low.to_be_bytes());
        TraceId::parse(hex(&bytes).as_bytes()).unwrap()
    };
    let (none, half, all) = (
        ratio_threshold(0.0),
        ratio_threshold(0.5),
        ratio_threshold(1.0),
    );
    for low in [0, 1, (1 << 62) - 1, 1 << 62, u64::MAX >> 1, u64::MAX] {
        assert!(!sampled_under(&id(low), none), "{low:#x}");
        assert!(sampled_under(&id(low), all), "{low:#x}");
    }
    // The top bit is ignored; half the 63-bit range is below 2^62.
    assert!(sampled_under(&id((1 << 62) - 1), half));
    assert!(sampled_under(&id((1 << 63) | ((1 << 62) - 1)), half));
    assert!(!sampled_under(&id(1 << 62), half));
    assert!(!sampled_under(&id(u64::MAX), half));
    assert_eq!(ratio_threshold(-1.0), 0);
    assert_eq!(ratio_threshold(7.0), u64::MAX);
    assert_eq!(ratio_threshold(f64::NAN), 0);
}

#[test]
fn new_trace_ids_are_sampled_at_the_configured_ratio() {
    // 20,000 draws: the standard deviation of a sampled fraction is at most 0.0036, so each
    // band below is over 10 of them wide, and an ID with a fixed bit among the low 63 (a
    // version 4 UUID's variant bits) sampled twice the ratio.
    const DRAWS: u32 = 20_000;
    for ratio in [0.1, 0.25, 0.5, 0.75] {
        let threshold = ratio_threshold(ratio);
        let sampled = (0..DRAWS)
            .filter(|_| sampled_under(&TraceId::random(), threshold))
            .count();
        let fraction = f64::from(u32::try_from(sampled).unwrap()) / f64::from(DRAWS);
        assert!(
            (fraction - ratio).abs() < 0.04,
            "ratio {ratio}: sampled {fraction}"
        );
    }
    // Every bit varies: no bit of 64 draws is the same in all of them.
    let draws: Vec<[u8; 16]> = (0..64).map(|_| TraceId::random().bytes()).collect();
    for byte in 0..16 {
        let (ones, zeros) = draws
            .iter()
            .fold((0u8, 0xff_u8), |(or, and), d| (or | d[byte], and & d[byte]));
        assert_eq!((ones, zeros), (0xff, 0), "byte {byte} has a fixed bit");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

proptest! {
    /// Arbitrary bytes never panic, and whatever parses renders back to a header that parses
    /// to the same span.
    #[test]
    fn arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        if let Some(parsed) = TraceParent::parse(&bytes) {
            prop_assert_eq!(TraceParent::parse(parsed.to_header().as_bytes()), Some(parsed));
        }
    }

    /// Every well-formed version 00 header parses to its fields, and one changed character
    /// either still parses to a well-formed header or is refused.
    #[test]
    fn well_formed_headers_parse(
        trace in any::<[u8; 16]>(),
        span in any::<[u8; 8]>(),
        flags in any::<u8>(),
        at in 0..55usize,
        byte in any::<u8>(),
    ) {
        prop_assume!(trace.iter().any(|&b| b != 0) && span.iter().any(|&b| b != 0));
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let header = format!("00-{}-{}-{:02x}", hex(&trace), hex(&span), flags);
        let parsed = TraceParent::parse(header.as_bytes()).unwrap();
        prop_assert_eq!(parsed.trace_id().bytes(), trace);
        prop_assert_eq!(parsed.span_id().bytes(), span);
        prop_assert_eq!(parsed.flags(), flags);
        prop_assert_eq!(parsed.to_header(), header.as_str());
        let mut edited = header.into_bytes();
        edited[at] = byte;
        let lowercase_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        let still_valid = if [2, 35, 52].contains(&at) { byte == b'-' } else { lowercase_hex(byte) };
        if !still_valid {
            prop_assert_eq!(TraceParent::parse(&edited), None);
        }
    }
}

/// The specification's rules for a `traceparent`, written plainly, one digit at a time: what
/// the table-driven parser must agree with.
fn reference_parse(value: &[u8]) -> Option<(Vec<u8>, Vec<u8>, u8)> {
    fn digit(d: u8) -> Option<u8> {
        match d {
            b'0'..=b'9' => Some(d - b'0'),
            b'a'..=b'f' => Some(d - b'a' + 10),
            _ => None,
        }
    }
    fn byte(pair: &[u8]) -> Option<u8> {
        Some(digit(pair[0])? << 4 | digit(pair[1])?)
    }
    fn id(hex: &[u8]) -> Option<Vec<u8>> {
        let bytes = hex.chunks(2).map(byte).collect::<Option<Vec<u8>>>()?;
        bytes.iter().any(|&b| b != 0).then_some(bytes)
    }
    if value.len() < 55 {
        return None;
    }
    let version = byte(&value[0..2])?;
    if version == 0xff
        || (version == 0 && value.len() != 55)
        || (value.len() > 55 && value[55] != b'-')
        || value[2] != b'-'
        || value[35] != b'-'
        || value[52] != b'-'
    {
        return None;
    }
    let trace = id(&value[3..35])?;
    let span = id(&value[36..52])?;
    let flags = byte(&value[53..55])?;
    Some((trace, span, if version == 0 { flags } else { flags & 1 }))
}

/// A byte likely to matter to a `traceparent` parser: hex digits and their neighbours in
/// ASCII, uppercase, dashes, zeros, or any byte.
fn edge_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => proptest::sample::select(b"0123456789abcdef".to_vec()),
        2 => proptest::sample::select(b"ABCDEF-/:@`gG \0".to_vec()),
        1 => any::<u8>(),
    ]
}

proptest! {
    /// The parser agrees with the plain reference on valid headers of any version (IDs
    /// sometimes all zeros) with up to three bytes changed and bytes added or cut at the end.
    #[test]
    fn the_parser_agrees_with_the_reference(
        version in prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), any::<u8>()],
        trace in prop_oneof![Just([0u8; 16]), any::<[u8; 16]>()],
        span in prop_oneof![Just([0u8; 8]), any::<[u8; 8]>()],
        flags in any::<u8>(),
        edits in proptest::collection::vec((0..60usize, edge_byte()), 0..4),
        tail in proptest::collection::vec(edge_byte(), 0..4),
        cut in 0..4usize,
    ) {
        let mut value = format!("{version:02x}-{}-{}-{flags:02x}", hex(&trace), hex(&span))
            .into_bytes();
        value.extend_from_slice(&tail);
        value.truncate(value.len() - cut);
        for (at, byte) in edits {
            if let Some(slot) = value.get_mut(at) {
                *slot = byte;
            }
        }
        let parsed = TraceParent::parse(&value).map(|p| {
            (p.trace_id().bytes().to_vec(), p.span_id().bytes().to_vec(), p.flags())
        });
        prop_assert_eq!(parsed, reference_parse(&value));
    }
}

proptest! {
    /// Eight digits at a time agree with one digit at a time, for digits, their ASCII
    /// neighbours and any byte at all (non-ASCII ones included).
    #[test]
    fn eight_digits_at_once_agree_with_one_at_a_time(
        digits in prop_oneof![
            proptest::array::uniform8(edge_byte()),
            any::<[u8; 8]>(),
        ],
    ) {
        let one_at_a_time = u32::from_str_radix(std::str::from_utf8(&digits).unwrap_or("+"), 16)
            .ok()
            .filter(|_| digits.iter().all(|d| d.is_ascii_digit() || (b'a'..=b'f').contains(d)))
            .map(u32::to_be_bytes);
        prop_assert_eq!(hex8(digits), one_at_a_time);
    }
}

proptest! {
    /// Every ID renders as the hex `{:02x}` writes, byte by byte.
    #[test]
    fn ids_render_as_lowercase_hex(trace in any::<[u8; 16]>(), span in any::<[u8; 8]>()) {
        let hex = |b: &[u8]| b.iter().map(|b| format!("{b:02x}")).collect::<String>();
        prop_assert_eq!(HexId { bytes: trace }.to_string(), hex(&trace));
        prop_assert_eq!(HexId { bytes: span }.to_string(), hex(&span));
        prop_assert_eq!(HexId { bytes: [trace[0]] }.to_string(), hex(&trace[..1]));
        prop_assert_eq!(HexId { bytes: [trace[0], trace[1], trace[2], trace[3], span[0]] }.to_string(), hex(&[trace[0], trace[1], trace[2], trace[3], span[0]]));
    }
}
