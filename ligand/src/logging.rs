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
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Json => Box::new(
            builder
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
        ),
        LogFormat::Text => {
            use std::io::IsTerminal;
            let color = std::io::stdout().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty());
            Box::new(builder.with_ansi(color).finish())
        }
    }
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
    let path = std::env::var_os("LIGAND_CONFIG")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "ligand.toml".into());
    let Ok(text) = std::fs::read_to_string(path) else {
        return (None, None);
    };
    let Ok(table) = text.parse::<toml::Table>() else {
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
