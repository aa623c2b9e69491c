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
    /// `target`, the event's `fields`, and the current `span` with its fields. In a handler
    /// that span is the request span, so every line carries `request_id`, `trace_id` and
    /// `span_id`.
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
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
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
            with_export(builder.with_ansi(color).finish(), export)
        }
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
