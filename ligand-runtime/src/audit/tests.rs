//! The chain writer's checkpoint timing, on an injected clock.
#![allow(clippy::unwrap_used, reason = "tests")]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use super::{AuditChain, VerifyOptions, verify};
use crate::testkit::{ManualClock, TestCa};
use crate::tls::IdentityState;
use crate::{JsonLinesTelemetry, MetricsSnapshot, Telemetry};

const SERVICE: &str = "spiffe://example.org/service/accounts";

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn checkpoints(&self) -> usize {
        String::from_utf8(self.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"type\":\"checkpoint\""))
            .count()
    }
}

#[test]
fn a_checkpoint_follows_the_interval_only_when_records_were_written() {
    let ca = TestCa::new("example.org");
    let clock = Arc::new(ManualClock::new(SystemTime::now()));
    let buffer = Buffer::default();
    let chain = AuditChain::default()
        .checkpoint_every(1000)
        .checkpoint_interval(Duration::from_secs(60));
    let sink = JsonLinesTelemetry::new(buffer.clone())
        .with_chain(chain)
        .with_clock(clock.clone());
    assert_eq!(sink.idle_flush_interval(), Some(Duration::from_secs(60)));
    let identity = IdentityState::new(&ca.context(ca.svid(SERVICE)), None).unwrap();
    sink.attach_identity(&Arc::new(identity));

    sink.record_metrics(&MetricsSnapshot::default()).unwrap();
    sink.flush().unwrap();
    assert_eq!(buffer.checkpoints(), 0, "the interval has not passed");
    clock.advance(Duration::from_secs(59));
    sink.flush().unwrap();
    assert_eq!(buffer.checkpoints(), 0);
    clock.advance(Duration::from_secs(1));
    sink.flush().unwrap();
    assert_eq!(
        buffer.checkpoints(),
        1,
        "the interval passed with a record unsealed"
    );
    clock.advance(Duration::from_secs(600));
    sink.flush().unwrap();
    assert_eq!(buffer.checkpoints(), 1, "nothing new to seal");

    sink.close().unwrap();
    assert_eq!(buffer.checkpoints(), 2, "the final checkpoint");
    let text = buffer.0.lock().unwrap().clone();
    let service = SERVICE.parse().unwrap();
    let report = verify(
        &text[..],
        &ca.bundles(),
        &service,
        &VerifyOptions::default(),
    )
    .unwrap();
    assert_eq!(report.checkpoints, 2);
}

#[test]
fn without_an_identity_records_are_chained_but_not_sealed() {
    let ca = TestCa::new("example.org");
    let buffer = Buffer::default();
    let sink = JsonLinesTelemetry::new(buffer.clone())
        .with_chain(AuditChain::default().checkpoint_every(1));
    sink.record_metrics(&MetricsSnapshot::default()).unwrap();
    sink.close().unwrap();
    assert_eq!(buffer.checkpoints(), 0);
    let text = buffer.0.lock().unwrap().clone();
    let service = SERVICE.parse().unwrap();
    let strict = verify(
        &text[..],
        &ca.bundles(),
        &service,
        &VerifyOptions::default(),
    );
    assert!(strict.is_err());
    let live = VerifyOptions::default().allow_unsealed(true);
    let report = verify(&text[..], &ca.bundles(), &service, &live).unwrap();
    assert_eq!((report.records, report.unsealed), (1, 1));
}
