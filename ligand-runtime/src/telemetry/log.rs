//! [`LogLinesTelemetry`]: the audit log as readable lines, one record per line.

use std::fmt;
use std::io::{self, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use super::out::Out;
use super::{
    DecisionEvent, HealthTransitionEvent, OutboundCallEvent, RateLimitEvent, SecretAccessEvent,
    Telemetry,
};
use crate::error::ProviderError;
use crate::policy::EvalRequest;
use crate::request_id::RequestId;

/// Writes every record as one line of `key=value` fields, for people and for `logfmt`
/// parsers:
///
/// ```text
/// 2026-12-06T04:13:27.461486Z audit decision request_id=487464c3124f41148d03bc37c8b1617d peer=spiffe://bank.example/service/reporting resource=/accounts/{id} action=GET allowed=true cached=false reason=allowed latency_us=201
/// ```
///
/// A decision for every request that reached policy, rate-limit records only for denials and
/// limiter errors, outbound calls, secret accesses and health transitions (metrics snapshots
/// are for [`JsonLinesTelemetry`](super::JsonLinesTelemetry) and metrics sinks). A value that
/// is not a plain token is quoted with Rust string escapes, so a caller-controlled string
/// can neither break a line nor forge a field.
///
/// Unlike [`TracingTelemetry`](super::TracingTelemetry), records do not pass through the log
/// subscriber: `RUST_LOG` cannot silence the audit trail, and a record costs a fraction of a
/// formatted log event. The sink is buffered; the framework's audit writer flushes it when its
/// queue runs empty.
///
/// ```
/// use ligand_runtime::LogLinesTelemetry;
///
/// let audit = LogLinesTelemetry::new(Vec::new());
/// # let _ = audit;
/// // Config::builder().telemetry(LogLinesTelemetry::stdout()) ...
/// ```
pub struct LogLinesTelemetry {
    out: Out<Stamp>,
}

impl fmt::Debug for LogLinesTelemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogLinesTelemetry")
    }
}

impl LogLinesTelemetry {
    /// Writes to `out`.
    pub fn new(out: impl Write + Send + 'static) -> Self {
        Self { out: Out::new(out) }
    }

    /// Writes to the process's standard output, in writes of at most 4 KiB (atomic on a pipe,
    /// so lines never interleave with other output).
    pub fn stdout() -> Self {
        Self { out: Out::stdout() }
    }

    /// Appends to the file at `path`, creating it (mode 0600 on Unix: the audit log names
    /// callers and resources) if it does not exist.
    pub fn file(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            out: Out::file(path.as_ref())?,
        })
    }

    /// One line: the timestamp, `audit`, `kind` and the fields. Inlined, as are the field
    /// writers, so that the constant pieces (the kind, each key) are copied as constants
    /// rather than through a call per piece.
    #[inline(always)]
    fn line(
        &self,
        time: SystemTime,
        kind: &str,
        fields: impl FnOnce(&mut Fields<'_>) -> io::Result<()>,
    ) -> Result<(), ProviderError> {
        self.out.line_with(|out, stamp| {
            out.extend_from_slice(&stamp.format(time));
            out.extend_from_slice(b" audit ");
            out.extend_from_slice(kind.as_bytes());
            fields(&mut Fields { out })?;
            out.push(b'\n');
            Ok(())
        })
    }
}

/// ` name=`: a field's key with the separators around it, one constant piece to copy.
macro_rules! key {
    ($name:literal) => {
        concat!(" ", $name, "=")
    };
}

/// The fields of one line. Each takes its key as `key!` writes it.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
}

impl Fields<'_> {
    /// ` key=value`, the value quoted and escaped unless it is a plain token.
    #[inline(always)]
    fn str(&mut self, key: &str, value: &str) -> io::Result<()> {
        if is_token(value) {
            self.raw(key, value.as_bytes())
        } else {
            self.quoted(key, value)
        }
    }

    /// ` key="value"` with Rust string escapes: out of line, as values that need it are rare.
    #[cold]
    #[inline(never)]
    fn quoted(&mut self, key: &str, value: &str) -> io::Result<()> {
        write!(self.out, "{key}{value:?}")
    }

    /// ` key=value` with `value` written as it is. Plain appends: a decision line is on the
    /// audit writer's hot path, and formatting machinery costs several times as much.
    #[inline(always)]
    fn raw(&mut self, key: &str, value: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(value);
        Ok(())
    }

    #[inline(always)]
    fn bool(&mut self, key: &str, value: bool) -> io::Result<()> {
        // A branch each, so that both values are copied as constants.
        if value {
            self.raw(key, b"true")
        } else {
            self.raw(key, b"false")
        }
    }

    #[inline(always)]
    fn count(&mut self, key: &str, value: u128) -> io::Result<()> {
        let mut digits = [0u8; 39];
        let at = decimal(value, &mut digits);
        self.raw(key, &digits[at..])
    }

    /// The field when there is a value; nothing otherwise.
    #[inline(always)]
    fn opt(&mut self, key: &str, value: Option<&str>) -> io::Result<()> {
        match value {
            Some(value) => self.str(key, value),
            None => Ok(()),
        }
    }

    fn display(&mut self, key: &str, value: impl fmt::Display) -> io::Result<()> {
        write!(self.out, "{key}{value}")
    }

    #[inline(always)]
    fn micros(&mut self, key: &str, value: Duration) -> io::Result<()> {
        self.count(key, value.as_micros())
    }

    /// The fields naming a request, the same in its decision and rate-limit lines: its ID,
    /// its peer, the resource and the action.
    #[inline(always)]
    fn request(&mut self, request_id: &RequestId, input: &EvalRequest) -> io::Result<()> {
        // Hex digits: written as they are, without the byte-by-byte check.
        self.raw(key!("request_id"), request_id.as_bytes())?;
        self.opt(key!("peer"), input.chain.peer().and_then(|l| l.principal()))?;
        self.str(key!("resource"), &input.resource.value)?;
        self.str(key!("action"), &input.action.name)
    }
}

/// Writes `value` in decimal at the end of `digits`; returns where the digits start.
fn decimal(value: u128, digits: &mut [u8; 39]) -> usize {
    let mut at = digits.len();
    // The digits above 64 bits, if any, in 128-bit arithmetic; the rest (all of almost
    // every count) in 64-bit, whose division is several times cheaper.
    let mut wide = value;
    let mut rest = loop {
        match u64::try_from(wide) {
            Ok(narrow) => break narrow,
            Err(_) => {
                at -= 1;
                // `wide % 10` is below 10.
                digits[at] = b'0' + (wide % 10) as u8;
                wide /= 10;
            }
        }
    };
    loop {
        at -= 1;
        // `rest % 10` is below 10.
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    at
}

/// `YYYY-MM-DDTHH:MM:SS.ssssssZ` in UTC, as `humantime::format_rfc3339_micros` writes it,
/// without the formatting machinery. Times before 1970 are written as 1970-01-01T00:00:00Z.
#[cfg(test)]
fn rfc3339_micros(time: SystemTime) -> [u8; 27] {
    Stamp::default().format(time)
}

/// The timestamp of a line, with the date and time to the second of the last one kept: it
/// changes once a second, and a busy log writes many lines in each.
#[derive(Debug)]
struct Stamp {
    /// Whole seconds since 1970 of the time in `head`.
    secs: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `secs`.
    head: [u8; 20],
}

impl Default for Stamp {
    fn default() -> Self {
        Self {
            secs: 0,
            head: *b"1970-01-01T00:00:00.",
        }
    }
}

impl Stamp {
    /// `time` as `YYYY-MM-DDTHH:MM:SS.ssssssZ` in UTC, as `humantime::format_rfc3339_micros`
    /// writes it, without the formatting machinery. Times before 1970 are written as
    /// 1970-01-01T00:00:00.000000Z.
    #[inline(always)]
    fn format(&mut self, time: SystemTime) -> [u8; 27] {
        let since = time
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let secs = since.as_secs();
        if secs != self.secs {
            self.head = head(secs);
            self.secs = secs;
        }
        let mut out = [0u8; 27];
        out[..20].copy_from_slice(&self.head);
        let mut micros = since.subsec_micros();
        for digit in out[20..26].iter_mut().rev() {
            // `micros % 10` is below 10.
            *digit = b'0' + (micros % 10) as u8;
            micros /= 10;
        }
        out[26] = b'Z';
        out
    }
}

/// `YYYY-MM-DDTHH:MM:SS.` of `secs` seconds since 1970, in UTC.
fn head(secs: u64) -> [u8; 20] {
    let (days, of_day) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let mut out = *b"0000-00-00T00:00:00.";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            // `value % 10` is below 10.
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    out
}

/// The proleptic Gregorian date of `days` since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Whether `value` can be written bare: non-empty, printable ASCII, and nothing that would
/// end the value or start a quoted one.
#[inline(always)]
fn is_token(value: &str) -> bool {
    // Every byte, without stopping at the first bad one: a loop without a branch per byte,
    // several times cheaper on the plain values that are almost all of them.
    let mut token = !value.is_empty();
    for &b in value.as_bytes() {
        token &= TOKEN_BYTE[usize::from(b)];
    }
    token
}

/// The bytes a bare value may hold: printable ASCII except `"`, `=` and `\`. A table, as
/// every field of every line is checked byte by byte.
static TOKEN_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0x21;
    while b < 0x7f {
        table[b] = !matches!(b as u8, b'"' | b'=' | b'\\');
        b += 1;
    }
    table
};

impl Telemetry for LogLinesTelemetry {
    fn record_decision(&self, e: &DecisionEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "decision", |f| {
            f.request(&e.request_id, &e.input)?;
            f.bool(key!("allowed"), e.allowed)?;
            f.bool(key!("cached"), e.cached)?;
            f.opt(key!("reason"), e.reason.as_deref())?;
            f.opt(key!("error"), e.error.as_deref())?;
            f.micros(key!("latency_us"), e.latency)
        })
    }

    fn record_rate_limit(&self, e: &RateLimitEvent) -> Result<(), ProviderError> {
        if e.allowed {
            return Ok(());
        }
        self.line(e.timestamp, "rate_limit", |f| {
            f.request(&e.request_id, &e.input)?;
            if let Some(retry_after) = e.retry_after {
                f.count(key!("retry_after_ms"), retry_after.as_millis())?;
            }
            f.opt(key!("error"), e.error.as_deref())
        })
    }

    fn record_outbound_call(&self, e: &OutboundCallEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "outbound_call", |f| {
            f.str(key!("source"), &e.source)?;
            f.str(key!("target"), &e.target)?;
            f.str(key!("method"), e.method.as_str())?;
            f.str(key!("address"), &e.address)?;
            f.str(key!("outcome"), outcome_name(e.outcome))?;
            if let Some(status) = e.status {
                f.count(key!("status"), status.into())?;
            }
            f.count(key!("attempts"), e.attempts.into())?;
            f.micros(key!("latency_us"), e.latency)
        })
    }

    fn record_health_transition(&self, e: &HealthTransitionEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "health", |f| {
            f.display(key!("provider"), e.kind)?;
            f.display(key!("from"), e.from)?;
            f.display(key!("to"), e.to)?;
            f.opt(key!("cause"), e.cause.as_deref())
        })
    }

    fn record_secret_access(&self, e: &SecretAccessEvent) -> Result<(), ProviderError> {
        self.line(e.timestamp, "secret_access", |f| {
            f.str(key!("secret"), &e.name)?;
            f.str(key!("access"), secret_access_name(e.access))?;
            f.opt(
                key!("request_id"),
                e.request_id.as_ref().map(|id| id.as_str()),
            )?;
            f.opt(
                key!("peer"),
                e.chain
                    .as_ref()
                    .and_then(|c| c.peer())
                    .and_then(|l| l.principal()),
            )?;
            f.opt(key!("error"), e.error.as_deref())
        })
    }

    fn flush(&self) -> Result<(), ProviderError> {
        self.out.flush()
    }

    fn close(&self) -> Result<(), ProviderError> {
        self.flush()
    }
}

/// The outcome as in the JSON lines (its serde name; a test holds the two together).
fn outcome_name(outcome: super::OutboundOutcome) -> &'static str {
    use super::OutboundOutcome::*;
    match outcome {
        Success => "success",
        ServerError => "server_error",
        ConnectError => "connect_error",
        IdentityMismatch => "identity_mismatch",
        Timeout => "timeout",
        Refused => "refused",
        CircuitOpen => "circuit_open",
        Overloaded => "overloaded",
    }
}

/// The access as in the JSON lines (its serde name; a test holds the two together).
fn secret_access_name(access: super::SecretAccess) -> &'static str {
    use super::SecretAccess::*;
    match access {
        Hit => "hit",
        Miss => "miss",
        Renewal => "renewal",
        Revocation => "revocation",
        Error => "error",
    }
}

#[cfg(test)]
mod tests;
