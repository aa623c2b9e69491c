//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` of an
//! inbound request, parsed without allocating, and the one sent on outbound calls.
//!
//! A request whose `traceparent` is valid joins the caller's trace: its span gets a new span
//! ID with the caller's span as parent. A missing or malformed header starts a new trace; it
//! is never an error to the caller. Outbound calls made while serving a request carry the
//! same trace ID with a new parent ID (the call's own span); calls made outside any request
//! start a new trace.
//!
//! ```
//! use ligand_runtime::trace::TraceParent;
//!
//! let parent = TraceParent::parse(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
//!     .unwrap();
//! assert_eq!(parent.trace_id().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(parent.sampled());
//! let child = parent.child();
//! assert_eq!(child.trace_id(), parent.trace_id());
//! assert_ne!(child.span_id(), parent.span_id());
//! assert!(TraceParent::parse(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderValue;

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";

/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

/// The longest `tracestate` forwarded (the specification's limit for propagation, 512).
pub const MAX_TRACESTATE_LEN: usize = 512;

/// A trace ID or span ID in lowercase hex, kept inline: `N` bytes, `2N` digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct HexId<const N: usize> {
    bytes: [u8; N],
}

/// The sampling threshold of the traces this process starts: a new trace is sampled when the
/// low 63 bits of its ID are below it (OpenTelemetry's `TraceIdRatioBased`). None by default.
static NEW_TRACE_SAMPLING: AtomicU64 = AtomicU64::new(0);

/// Samples `ratio` (from 0 to 1) of the traces this process starts from now on: their
/// `traceparent`, the one sent on outbound calls included, carries the sampled flag, so that
/// every service along the trace exports its part (parent-based sampling). Process-wide, as a
/// trace exporter is; the facade's OpenTelemetry export sets it from `[telemetry] sampling`.
/// Traces joined from a caller keep the caller's decision.
pub fn sample_new_traces(ratio: f64) {
    NEW_TRACE_SAMPLING.store(ratio_threshold(ratio), Ordering::Relaxed);
}

/// The threshold sampling `ratio` of trace IDs: `0` samples none, `u64::MAX` all.
fn ratio_threshold(ratio: f64) -> u64 {
    if ratio >= 1.0 {
        u64::MAX
    } else if ratio > 0.0 {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "0 < ratio < 1, so the product is in 0..2^63"
        )]
        let threshold = (ratio * (1u64 << 63) as f64) as u64;
        threshold
    } else {
        0
    }
}

/// Whether the trace `trace_id` is sampled under `threshold`: the low 63 bits of the ID,
/// read big-endian, are below it.
fn sampled_under(trace_id: &TraceId, threshold: u64) -> bool {
    let bytes = trace_id.bytes();
    let mut low = [0u8; 8];
    low.copy_from_slice(&bytes[8..]);
    u64::from_be_bytes(low) & (u64::MAX >> 1) < threshold
}

/// A 16-byte trace ID.
pub type TraceId = HexId<16>;

/// An 8-byte span ID.
pub type SpanId = HexId<8>;

impl<const N: usize> HexId<N> {
    /// The ID's bytes.
    pub fn bytes(&self) -> [u8; N] {
        self.bytes
    }

    /// The ID as lowercase hex, written into `out` (which must be `2N` bytes): four bytes at
    /// a time, the rest one at a time.
    fn write_hex(&self, out: &mut [u8]) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut quads = self.bytes.chunks_exact(4);
        let mut digits = out.chunks_exact_mut(8);
        for (quad, digits) in (&mut quads).zip(&mut digits) {
            let mut four = [0u8; 4];
            four.copy_from_slice(quad);
            digits.copy_from_slice(&hex8_of(four));
        }
        for (byte, pair) in quads
            .remainder()
            .iter()
            .zip(digits.into_remainder().chunks_exact_mut(2))
        {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 0xf)];
        }
    }

    /// The ID as lowercase hex.
    pub fn as_str(&self) -> HexStr<N> {
        HexStr(*self)
    }

    /// `N` random bytes from the thread's CSPRNG. Every bit is random: a trace is sampled by
    /// its ID's low 63 bits, and W3C Trace Context level 2 expects the rightmost 7 bytes to
    /// be random (a version 4 UUID, used here before, fixes 6 of its bits, one of them among
    /// the 63, which sampled twice the configured ratio).
    fn random() -> Self {
        loop {
            let mut bytes = [0u8; N];
            rand::fill(&mut bytes[..]);
            // All zeros is invalid; with 64 or 128 random bits this loop runs once.
            if bytes.iter().any(|&b| b != 0) {
                return Self { bytes };
            }
        }
    }

    /// Parses `2N` lowercase hex digits; all zeros is invalid.
    fn parse(hex: &[u8]) -> Option<Self> {
        if hex.len() != 2 * N {
            return None;
        }
        let mut bytes = [0u8; N];
        let mut out = bytes.chunks_exact_mut(4);
        let mut digits = hex.chunks_exact(8);
        for (out, digits) in (&mut out).zip(&mut digits) {
            out.copy_from_slice(&hex8(<[u8; 8]>::try_from(digits).ok()?)?);
        }
        // An ID whose length is not a multiple of 4 bytes ends one byte at a time.
        for (byte, pair) in out
            .into_remainder()
            .iter_mut()
            .zip(digits.remainder().chunks_exact(2))
        {
            *byte = hex_byte(pair[0], pair[1])?;
        }
        bytes.iter().any(|&b| b != 0).then_some(Self { bytes })
    }
}

/// A [`HexId`] rendered as lowercase hex without allocating; `Display` writes it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HexStr<const N: usize>(HexId<N>);

impl<const N: usize> fmt::Display for HexStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One `write_str` of the digits: a request span formats two IDs per request, and
        // `{:02x}` per byte cost ~100 instructions a byte.
        let mut hex = [0u8; 64];
        let hex = &mut hex[..2 * N];
        self.0.write_hex(hex);
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(hex).map_err(|_| fmt::Error)?)
    }
}

impl<const N: usize> fmt::Debug for HexStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<const N: usize> PartialEq<&str> for HexStr<N> {
    fn eq(&self, other: &&str) -> bool {
        let mut hex = [0u8; 64];
        let hex = &mut hex[..2 * N];
        self.0.write_hex(hex);
        hex == other.as_bytes()
    }
}

impl<const N: usize> fmt::Display for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_str(), f)
    }
}

impl<const N: usize> fmt::Debug for HexId<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.as_str(), f)
    }
}

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`]: anything else (uppercase
/// included) is refused, as the specification requires.
static HEX: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        table[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    table
};

/// The [`HEX`] entry of a byte that is not a lowercase hex digit: its high bits are set.
const NOT_HEX: u8 = 0xff;

/// The eight lowercase hex digits spelling four bytes, made together in one `u64` (the
/// inverse of [`hex8`]; a `traceparent` sent on every outbound call has 50 digits).
fn hex8_of(bytes: [u8; 4]) -> [u8; 8] {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const LOW: u64 = 0x000f_000f_000f_000f;
    let x = u64::from(u32::from_le_bytes(bytes));
    // Little-endian: input byte i moves to byte 2i...
    let x = (x | (x << 16)) & 0x0000_ffff_0000_ffff;
    let x = (x | (x << 8)) & 0x00ff_00ff_00ff_00ff;
    // ...its high nibble stays there and its low nibble goes to byte 2i + 1, the order the
    // digits are written in.
    let nibbles = ((x >> 4) & LOW) | ((x & LOW) << 8);
    // A nibble of 10 or more gets a carry into bit 4 from adding 6 (no byte overflows); its
    // digit is a letter, 'a' - '0' - 10 = 39 further than a digit would be.
    let letter = ((nibbles + 6 * ONES) >> 4) & ONES;
    (nibbles + u64::from(b'0') * ONES + letter * 39).to_le_bytes()
}

/// The four bytes eight lowercase hex digits spell, or `None` if one is anything else. The
/// digits are checked and converted together, each in its own byte of one `u64` (a
/// `traceparent` has 48 digits: one at a time, they cost about 8 instructions each).
fn hex8(digits: [u8; 8]) -> Option<[u8; 4]> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let x = u64::from_le_bytes(digits);
    // For ASCII bytes (below 0x80), adding 0x80 - c to every byte sets a byte's high bit
    // exactly when it is at least c, with no carry into the next byte. A non-ASCII byte is
    // refused whatever its neighbours' bits say.
    let at_least = |c: u8| x.wrapping_add(u64::from(0x80 - c) * ONES) & HIGH;
    let digit = at_least(b'0') & !at_least(b'9' + 1);
    let letter = at_least(b'a') & !at_least(b'f' + 1);
    if x & HIGH != 0 || digit | letter != HIGH {
        return None;
    }
    // '0'..='9' are 0x30..=0x39 and 'a'..='f' 0x61..=0x66: a digit's value is its low four
    // bits, plus 9 for a letter.
    let nibbles = (x & (0x0f * ONES)) + (letter >> 7) * 9;
    // Little-endian: byte 2i holds the high nibble of output byte i, byte 2i + 1 its low one.
    const EVEN: u64 = 0x00ff_00ff_00ff_00ff;
    let pairs = ((nibbles & EVEN) << 4) | ((nibbles >> 8) & EVEN);
    let quads = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let packed = (quads | (quads >> 16)).to_le_bytes();
    Some([packed[0], packed[1], packed[2], packed[3]])
}

/// The byte two lowercase hex digits spell.
fn hex_byte(high: u8, low: u8) -> Option<u8> {
    let (high, low) = (HEX[usize::from(high)], HEX[usize::from(low)]);
    ((high | low) & !0x0f == 0).then_some((high << 4) | low)
}

/// One span's place in a trace: the trace ID, the span ID and the trace flags, as a
/// `traceparent` header carries them (where the span ID is the receiver's parent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: TraceId,
    span_id: SpanId,
    flags: u8,
}

/// The length of a version 00 `traceparent`.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` header value, strictly: version 00 exactly 55 characters, ids of
    /// lowercase hex and not all zeros, version `ff` refused. A higher (future) version is
    /// parsed as version 00 where the specification says so: its first 55 characters as
    /// version 00, followed by the end or a `-` and fields this version ignores. `None` for
    /// anything else.
    pub fn parse(value: &[u8]) -> Option<Self> {
        if value.len() < LEN {
            return None;
        }
        let version = hex_byte(value[0], value[1])?;
        match version {
            0xff => return None,
            0 if value.len() != LEN => return None,
            _ if value.len() > LEN && value[LEN] != b'-' => return None,
            _ => {}
        }
        if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return None;
        }
        let trace_id = TraceId::parse(&value[3..35])?;
        let span_id = SpanId::parse(&value[36..52])?;
        let flags = hex_byte(value[53], value[54])?;
        // Version 00 defines only the sampled bit; a later version's other bits are not ours
        // to forward.
        let flags = if version == 0 { flags } else { flags & 1 };
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A new trace: random trace and span IDs, sampled as [`sample_new_traces`] says (not
    /// sampled unless it was called).
    pub fn new_root() -> Self {
        // Both IDs from one draw of the thread's CSPRNG: one call into it instead of two.
        let (trace_id, span_id) = loop {
            let mut bytes = [0u8; 24];
            rand::fill(&mut bytes[..]);
            let (mut trace, mut span) = ([0u8; 16], [0u8; 8]);
            trace.copy_from_slice(&bytes[..16]);
            span.copy_from_slice(&bytes[16..]);
            // All zeros is invalid for either; with 128 and 64 random bits this runs once.
            if trace.iter().any(|&b| b != 0) && span.iter().any(|&b| b != 0) {
                break (TraceId { bytes: trace }, SpanId { bytes: span });
            }
        };
        Self {
            trace_id,
            span_id,
            flags: u8::from(sampled_under(
                &trace_id,
                NEW_TRACE_SAMPLING.load(Ordering::Relaxed),
            )),
        }
    }

    /// A span of the same trace with this one as parent: a new span ID, the same flags.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: SpanId::random(),
            flags: self.flags,
        }
    }

    /// The trace ID.
    pub fn trace_id(&self) -> TraceId {
        self.trace_id
    }

    /// The span ID (the parent ID, in a received header).
    pub fn span_id(&self) -> SpanId {
        self.span_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the caller may have recorded its span (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The version 00 `traceparent` header naming this span as the parent.
    pub fn to_header(&self) -> HeaderValue {
        let mut out = [0u8; LEN];
        out[..3].copy_from_slice(b"00-");
        self.trace_id.write_hex(&mut out[3..35]);
        out[35] = b'-';
        self.span_id.write_hex(&mut out[36..52]);
        out[52] = b'-';
        HexId {
            bytes: [self.flags],
        }
        .write_hex(&mut out[53..55]);
        // Every byte is an ASCII digit, letter or dash, all valid in a header value.
        HeaderValue::from_bytes(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// A `tracestate` worth forwarding: at most [`MAX_TRACESTATE_LEN`] bytes of visible ASCII
/// (the list members' syntax is the vendors'; an oversized or binary one is dropped, as the
/// specification allows).
pub(crate) fn forwardable_tracestate(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_TRACESTATE_LEN
        && bytes.iter().all(|&b| (0x20..0x7f).contains(&b))
}

#[cfg(test)]
mod tests;
