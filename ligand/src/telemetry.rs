//! OpenTelemetry trace export (the `otel` feature): each request span, closed, becomes an OTLP
//! span sent over gRPC to a collector, with the IDs the request already carries (the trace ID
//! and span ID of `Ctx::trace()`, the log fields and the outbound `traceparent`) and the
//! caller's span as parent, so a collector links caller and callee.
//!
//! The exporter runs on its own thread and runtime: a slow or unreachable collector delays
//! nothing on the request path and fails no request (spans beyond the batch queue are dropped).

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::logging::REQUEST_TARGET;

/// Where and what to export, resolved from `[telemetry]` and the environment.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The collector's OTLP/gRPC endpoint.
    pub endpoint: String,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// The ratio of new traces sampled.
    pub sampling: f64,
}

/// The processor the export layer hands spans to, kept for the flush at shutdown.
static PROCESSOR: OnceLock<BatchSpanProcessor> = OnceLock::new();

/// Flushes the spans not yet exported and stops the exporter, waiting at most `timeout`. Called
/// last when a service closes; a no-op when nothing exports.
pub fn shutdown_telemetry(timeout: Duration) {
    if let Some(processor) = PROCESSOR.get() {
        let _ = processor.shutdown_with_timeout(timeout);
    }
}

/// [`log_subscriber`](crate::log_subscriber) with the request spans exported over OTLP/gRPC to
/// `endpoint` (such as `"http://127.0.0.1:4317"`) as `service_name`. `sampling`, from 0 to 1,
/// is the ratio of new traces exported; a trace whose caller sent the sampled flag always is.
/// For a service or a test that installs its own subscriber. The exporter is process-wide:
/// `None` if it cannot start or one was started before. [`shutdown_telemetry`] flushes it.
pub fn log_subscriber_exporting<W>(
    format: crate::LogFormat,
    filter: &str,
    writer: W,
    endpoint: &str,
    service_name: &str,
    sampling: f64,
) -> Option<Box<dyn tracing::Subscriber + Send + Sync>>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + Send + Sync + 'static,
{
    let export = layer(Settings {
        endpoint: endpoint.to_owned(),
        service_name: service_name.to_owned(),
        sampling,
    })?;
    Some(crate::logging::subscriber(
        format,
        filter,
        writer,
        Some(export),
    ))
}

/// Builds the exporter on a thread of its own (the gRPC channel's tasks live on that thread's
/// runtime) and returns the layer feeding it, or `None` if it cannot start.
pub(crate) fn layer(settings: Settings) -> Option<ExportLayer> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let endpoint = settings.endpoint.clone();
    std::thread::Builder::new()
        .name("ligand-otlp".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
            };
            let exporter = runtime.block_on(async {
                opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_endpoint(endpoint)
                    .with_timeout(Duration::from_secs(5))
                    .build()
                    .ok()
            });
            let ok = exporter.is_some();
            let _ = tx.send(exporter);
            if ok {
                // Keeps the channel's tasks running for the life of the process.
                runtime.block_on(std::future::pending::<()>());
            }
        })
        .ok()?;
    let exporter = rx.recv().ok()??;
    let mut processor = BatchSpanProcessor::builder(exporter).build();
    processor.set_resource(
        &Resource::builder()
            .with_service_name(settings.service_name)
            .build(),
    );
    PROCESSOR.set(processor).ok()?;
    // Traces this process starts carry the ratio's decision in their sampled flag, which the
    // layer and every callee then follow.
    ligand_runtime::trace::sample_new_traces(settings.sampling);
    Some(ExportLayer)
}

/// The `tracing` layer turning closed request spans into exported spans.
#[derive(Debug)]
pub(crate) struct ExportLayer;

/// What the request span recorded.
#[derive(Default)]
struct Fields {
    trace_id: Option<u128>,
    span_id: Option<u64>,
    parent_span_id: Option<u64>,
    sampled: bool,
    request_id: Option<String>,
    start: Option<SystemTime>,
}

impl Visit for Fields {
    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "sampled" {
            self.sampled = value;
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "trace_id" => self.trace_id = u128::from_str_radix(&format!("{value:?}"), 16).ok(),
            "span_id" => self.span_id = u64::from_str_radix(&format!("{value:?}"), 16).ok(),
            "parent_span_id" => {
                self.parent_span_id = u64::from_str_radix(&format!("{value:?}"), 16).ok();
            }
            "request_id" => self.request_id = Some(format!("{value:?}")),
            _ => {}
        }
    }
}

impl<S> tracing_subscriber::Layer<S> for ExportLayer
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if attrs.metadata().target() != REQUEST_TARGET {
            return;
        }
        let Some(span) = ctx.span(id) else { return };
        let mut fields = Fields {
            start: Some(SystemTime::now()),
            ..Fields::default()
        };
        attrs.record(&mut fields);
        span.extensions_mut().insert(fields);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if let Some(fields) = span.extensions_mut().get_mut::<Fields>() {
            values.record(fields);
        }
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(fields) = span.extensions_mut().remove::<Fields>() else {
            return;
        };
        let (Some(trace_id), Some(span_id)) = (fields.trace_id, fields.span_id) else {
            return;
        };
        // Parent-based: the caller's decision when it sent a traceparent, else the ratio's,
        // made when the trace started (`sample_new_traces`); both are the sampled flag.
        if !fields.sampled {
            return;
        }
        let Some(processor) = PROCESSOR.get() else {
            return;
        };
        let mut attributes = Vec::with_capacity(1);
        if let Some(request_id) = fields.request_id {
            attributes.push(KeyValue::new("request_id", request_id));
        }
        processor.on_end(SpanData {
            span_context: SpanContext::new(
                TraceId::from(trace_id),
                SpanId::from(span_id),
                TraceFlags::SAMPLED,
                false,
                TraceState::NONE,
            ),
            parent_span_id: SpanId::from(fields.parent_span_id.unwrap_or(0)),
            parent_span_is_remote: fields.parent_span_id.is_some(),
            span_kind: SpanKind::Server,
            name: Cow::Borrowed("request"),
            start_time: fields.start.unwrap_or_else(SystemTime::now),
            end_time: SystemTime::now(),
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("ligand").build(),
        });
    }
}
