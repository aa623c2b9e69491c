//! The log subscriber of `#[ligand::main]`: readable lines or JSON lines, the level from
//! `RUST_LOG` or `[log] level`.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogFormat {
    /// Human-readable lines (the default).
    #[default]
    Text,
    /// One JSON object per line (tracing-subscriber's JSON formatter): `timestamp`, `level`,
    /// `target`, the event's `fields`, and the current `span` with its fields. With the
    /// request span enabled (`ligand::request=debug` in the filter, or trace export), a
    /// handler's lines carry its `request_id`, `trace_id` and `span_id`.
    Json,
}

impl LogFormat {
    /// `text` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A log subscriber writing `format` lines to `writer`, filtered by `filter` (an `EnvFilter`
/// directive such as `info` or `info,ligand::audit=off`; an invalid one falls back to `info`).
/// [`init_logging`](crate::init_logging) installs one on standard output; a service or a test
/// that owns its logging can install its own.
pub fn log_subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    subscriber(format, filter, writer, None)
}

/// The target of the runtime's request span.
pub(crate) const REQUEST_TARGET: &str = "ligand::request";

/// The export layer, when trace export is built and configured.
#[cfg(feature = "otel")]
pub(crate) type Export = crate::telemetry::ExportLayer;
/// No export layer without the `otel` feature.
#[cfg(not(feature = "otel"))]
pub(crate) type Export = std::convert::Infallible;

/// [`log_subscriber`] with the OpenTelemetry export layer, if any.
pub(crate) fn subscriber<W>(
    format: LogFormat,
    filter: &str,
    writer: W,
    export: Option<Export>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let mut env_filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    // Exporting traces needs the request spans, which are at debug level; an explicit
    // directive for their target (`ligand::request=off`, say) is left as it is.
    if export.is_some()
        && !filter.contains(REQUEST_TARGET)
        && let Ok(directive) = format!("{REQUEST_TARGET}=debug").parse()
    {
        env_filter = env_filter.add_directive(directive);
    }
    let filter = env_filter;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => with_export(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
            export,
        ),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            with_export(
                builder.with_ansi(color).fmt_fields(LeanFields).finish(),
                export,
            )
        }
    }
}

/// tracing-subscriber's default field format (`name=value` separated by spaces, the message
/// bare), written with less machinery.
///
/// The request span's fields are formatted when the span opens, on every request: the default
/// visitor writes each field through a three-argument `write!` with ANSI styling objects even
/// when colours are off, and the span's string grows by reallocation as fields arrive, about
/// 2k instructions a field. This one composes the fields in a buffer on the stack and hands
/// them over in one write; with colours on, or for the message, errors and raw identifiers, it
/// passes the field to the default visitor, so lines read the same.
#[derive(Debug, Clone, Copy)]
struct LeanFields;

impl<'a> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'a>>
    for LeanFields
{
    type Visitor = LeanVisitor<'a>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'a>) -> Self::Visitor {
        LeanVisitor {
            writer,
            buffer: StackBuffer::default(),
            is_empty: true,
            result: Ok(()),
        }
    }
}

/// The visitor of [`LeanFields`].
struct LeanVisitor<'a> {
    writer: tracing_subscriber::fmt::format::Writer<'a>,
    /// Fields composed but not yet written.
    buffer: StackBuffer,
    is_empty: bool,
    result: std::fmt::Result,
}

impl LeanVisitor<'_> {
    /// Writes what the buffer holds.
    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            if self.result.is_ok() {
                self.result = self.writer.write_str(self.buffer.as_str());
            }
            self.buffer.clear();
        }
    }

    /// The default visitor, for the fields this one does not write itself.
    fn default_visitor(
        &mut self,
        visit: impl FnOnce(&mut tracing_subscriber::fmt::format::DefaultVisitor<'_>),
    ) {
        use tracing_subscriber::field::VisitOutput;
        self.flush();
        if self.result.is_err() {
            return;
        }
        let mut visitor = tracing_subscriber::fmt::format::DefaultVisitor::new(
            self.writer.by_ref(),
            self.is_empty,
        );
        visit(&mut visitor);
        self.result = visitor.finish();
        self.is_empty = false;
    }
}

impl tracing::field::Visit for LeanVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.default_visitor(|v| v.record_str(field, value));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_error(
        &mut self,
        field: &tracing::field::Field,
        value: &(dyn std::error::Error + 'static),
    ) {
        self.default_visitor(|v| v.record_error(field, value));
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        if self.result.is_err() {
            return;
        }
        let name = field.name();
        if name == "message"
            || name.starts_with("r#")
            || name.starts_with("log.")
            || self.writer.has_ansi_escapes()
        {
            self.default_visitor(|v| v.record_debug(field, value));
            return;
        }
        let mark = self.buffer.len();
        let separator = if self.is_empty { "" } else { " " };
        let composed = self
            .buffer
            .write_str(separator)
            .and_then(|()| self.buffer.write_str(name))
            .and_then(|()| self.buffer.write_str("="))
            .and_then(|()| write!(self.buffer, "{value:?}"));
        if composed.is_err() {
            // Too long for the buffer: what came before, then this field, straight through.
            self.buffer.truncate(mark);
            self.flush();
            self.result = self
                .writer
                .write_str(separator)
                .and_then(|()| self.writer.write_str(name))
                .and_then(|()| self.writer.write_str("="))
                .and_then(|()| write!(self.writer, "{value:?}"));
        }
        self.is_empty = false;
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for LeanVisitor<'_> {
    fn finish(mut self) -> std::fmt::Result {
        self.flush();
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for LeanVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        self.flush();
        &mut self.writer
    }
}

/// A few hundred bytes of text on the stack; a write that does not fit fails and leaves
/// what fitted.
struct StackBuffer {
    bytes: [u8; 256],
    len: usize,
}

impl Default for StackBuffer {
    fn default() -> Self {
        Self {
            bytes: [0; 256],
            len: 0,
        }
    }
}

impl StackBuffer {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    /// Back to `len` bytes, always a boundary some earlier write ended at.
    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the bytes are UTF-8 up to `len`.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or_default()
    }
}

impl std::fmt::Write for StackBuffer {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// `subscriber` boxed as it is when nothing exports, or with the export layer on top.
#[cfg(feature = "otel")]
fn with_export<S>(
    subscriber: S,
    export: Option<Export>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    use tracing_subscriber::layer::SubscriberExt;
    match export {
        Some(layer) => Box::new(subscriber.with(layer)),
        None => Box::new(subscriber),
    }
}

/// `subscriber` boxed (nothing exports without the `otel` feature).
#[cfg(not(feature = "otel"))]
fn with_export<S>(
    subscriber: S,
    export: Option<Export>,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    S: tracing::Subscriber + Send + Sync,
{
    match export {
        Some(never) => match never {},
        None => Box::new(subscriber),
    }
}

/// The trace export settings: the endpoint from `LIGAND_OTLP`, else `[telemetry] otlp`, else
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (none: nothing exports); the service name from
/// `OTEL_SERVICE_NAME`, else `[telemetry] service_name`, else the last path segment of the
/// SPIFFE ID (`LIGAND_SPIFFE_ID`, else `[identity] spiffe_id`), else the executable's name;
/// the sampling ratio from `[telemetry] sampling` (default 1). Read leniently, as the log
/// settings are: loading the configuration reports a bad value with its setting.
#[cfg(feature = "otel")]
pub(crate) fn telemetry_settings() -> Option<crate::telemetry::Settings> {
    let table = file_table();
    let section = |name: &str| {
        table
            .as_ref()
            .and_then(|t| t.get(name))
            .and_then(toml::Value::as_table)
    };
    let telemetry = section("telemetry");
    let get = |key: &str| telemetry.and_then(|t| t.get(key));
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let endpoint = env("LIGAND_OTLP")
        .or_else(|| get("otlp").and_then(toml::Value::as_str).map(str::to_owned))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    let spiffe_id = env("LIGAND_SPIFFE_ID").or_else(|| {
        section("identity")
            .and_then(|t| t.get("spiffe_id"))
            .and_then(toml::Value::as_str)
            .map(str::to_owned)
    });
    let service_name = env("OTEL_SERVICE_NAME")
        .or_else(|| {
            get("service_name")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        })
        .or_else(|| {
            spiffe_id.and_then(|id| {
                id.strip_prefix("spiffe://")
                    .and_then(|rest| rest.split_once('/'))
                    .and_then(|(_, path)| path.rsplit('/').next())
                    .filter(|last| !last.is_empty())
                    .map(str::to_owned)
            })
        })
        .or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|exe| exe.file_stem().map(|s| s.to_string_lossy().into_owned()))
        })
        .unwrap_or_else(|| "ligand".to_owned());
    let sampling = get("sampling")
        .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .unwrap_or(1.0);
    Some(crate::telemetry::Settings {
        endpoint,
        service_name,
        sampling,
    })
}

/// `ligand.toml` (`LIGAND_CONFIG`, else `./ligand.toml`) as a table, if it reads.
#[cfg(feature = "embedded")]
fn file_table() -> Option<toml::Table> {
    let path = std::env::var_os("LIGAND_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "ligand.toml".into());
    std::fs::read_to_string(path).ok()?.parse().ok()
}

/// The format and level: `LIGAND_LOG_FORMAT` and `RUST_LOG` first, then `[log] format` and
/// `level` of the configuration file (read leniently here: loading the configuration reports
/// a bad value with its setting).
pub(crate) fn settings() -> (LogFormat, String) {
    let env_format = std::env::var("LIGAND_LOG_FORMAT")
        .ok()
        .and_then(|v| LogFormat::parse(&v));
    let env_level = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let (file_format, file_level) = file_settings();
    (
        env_format.or(file_format).unwrap_or_default(),
        env_level
            .or(file_level)
            .unwrap_or_else(|| "info".to_owned()),
    )
}

#[cfg(feature = "embedded")]
fn file_settings() -> (Option<LogFormat>, Option<String>) {
    let Some(table) = file_table() else {
        return (None, None);
    };
    let log = table.get("log").and_then(toml::Value::as_table);
    let get = |key: &str| log.and_then(|t| t.get(key)).and_then(toml::Value::as_str);
    (
        get("format").and_then(LogFormat::parse),
        get("level").map(str::to_owned),
    )
}

#[cfg(not(feature = "embedded"))]
fn file_settings() -> (Option<LogFormat>, Option<String>) {
    (None, None)
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::LeanFields;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[derive(Debug)]
    struct Outer(std::io::Error);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("outer failed")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    /// Spans and events with every kind of field, as `subscriber` writes them.
    fn emit(subscriber: impl tracing::Subscriber + Send + Sync) {
        tracing::subscriber::with_default(subscriber, || {
            let long = "x".repeat(300);
            let span = tracing::info_span!(
                "request",
                request_id = %"0123456789abcdef0123456789abcdef",
                sampled = true,
                later = tracing::field::Empty,
                long = %long,
                quoted = "a \"b\"\n",
            );
            span.record("later", 7_u64);
            let _entered = span.enter();
            let error = Outer(std::io::Error::other("inner failed"));
            tracing::info!(
                count = 3_i64,
                ratio = 0.5_f64,
                r#type = "kind",
                error = &error as &(dyn std::error::Error + 'static),
                debug = ?vec![1, 2],
                "handled {}",
                "it"
            );
            tracing::warn!(only = "fields");
            tracing::info!("message only");
        });
    }

    fn run(lean: bool) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let builder = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .with_target(false);
        if lean {
            emit(builder.fmt_fields(LeanFields).finish());
        } else {
            emit(builder.finish());
        }
        let bytes = buffer.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn lean_fields_write_what_the_default_fields_write() {
        let default = run(false);
        let lean = run(true);
        assert!(
            default.contains("request_id=0123456789abcdef0123456789abcdef")
                && default.contains(&format!("long={}", "x".repeat(300)))
                && default.contains(r#"quoted="a \"b\"\n""#)
                && default.contains("later=7")
                && default.contains("inner failed")
                && default.lines().count() == 3,
            "{default}"
        );
        assert_eq!(lean, default);
    }
}
