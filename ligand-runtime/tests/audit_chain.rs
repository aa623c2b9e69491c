//! The tamper-evident decision log: a chained log written through a running service verifies,
//! and every kind of tampering is reported at the right line with the right cause.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ligand_runtime::audit::{AuditChain, Broken, VerifyError, VerifyOptions, verify};
use ligand_runtime::testkit::{
    AllowList, FakeIdentity, TestCa, audit_checkpoint_line, audit_line_hash, identity_state,
};
use ligand_runtime::{
    Action, Config, InboundRequest, JsonLinesTelemetry, Link, MetricsSnapshot, Resource, Server,
    SpiffeId, Telemetry, init_trust_boundary,
};
use proptest::prelude::*;

const SERVICE: &str = "spiffe://example.org/service/accounts";
const CALLER: &str = "spiffe://example.org/service/caller";

async fn server(ca: &TestCa, log: &Path, chain: AuditChain) -> Server {
    init_trust_boundary(
        Config::builder()
            .identity(FakeIdentity::new(ca.context(ca.svid(SERVICE))))
            .policy(AllowList::new().allow(CALLER, "GET", "/accounts/{id}"))
            .telemetry(JsonLinesTelemetry::chained_file(log, chain).unwrap())
            .build(),
    )
    .await
    .unwrap()
}

fn request(peer: &str) -> InboundRequest {
    InboundRequest::new(
        Link::workload(peer),
        Resource::http_path("/accounts/{id}"),
        Action::new("GET"),
    )
}

/// A log written by a service that served `requests` requests (every third one denied) and
/// shut down cleanly, with a checkpoint every 4 records.
async fn written_log(ca: &TestCa, dir: &Path, requests: usize) -> Vec<String> {
    let path = dir.join("audit.jsonl");
    let server = server(ca, &path, AuditChain::default().checkpoint_every(4)).await;
    for i in 0..requests {
        let peer = if i % 3 == 2 {
            "spiffe://example.org/service/intruder"
        } else {
            CALLER
        };
        let _ = server.enforce(request(peer)).await;
    }
    server.close().await;
    lines(&path)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn service() -> SpiffeId {
    SERVICE.parse().unwrap()
}

fn check(ca: &TestCa, lines: &[String]) -> Result<ligand_runtime::audit::Verified, VerifyError> {
    let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    verify(
        text.as_bytes(),
        &ca.bundles(),
        &service(),
        &VerifyOptions::default(),
    )
}

fn broken_at(result: Result<ligand_runtime::audit::Verified, VerifyError>) -> (u64, Broken) {
    match result {
        Err(VerifyError::Broken { line, broken }) => (line, broken),
        other => panic!("expected a broken link, got {other:?}"),
    }
}

fn json(line: &str) -> serde_json::Value {
    serde_json::from_str(line).unwrap()
}

#[tokio::test]
async fn a_log_written_by_a_running_service_verifies() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(&ca, dir.path(), 10).await;
    let report = check(&ca, &log).unwrap();
    assert_eq!(report.records, log.len() as u64);
    assert_eq!(report.unsealed, 0);
    assert!(report.checkpoints >= 3, "{report:?}");
    let decisions = log.iter().filter(|l| json(l)["type"] == "decision").count();
    assert_eq!(decisions, 10);
    for (i, line) in log.iter().enumerate() {
        assert_eq!(json(line)["seq"], i as u64, "{line}");
    }
    let last = json(log.last().unwrap());
    assert_eq!(last["type"], "checkpoint");
    assert_eq!(last["final"], true);
    assert_eq!(last["signer"], SERVICE);
}

#[tokio::test]
async fn an_edited_byte_is_reported_at_its_line() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let mut log = written_log(&ca, dir.path(), 6).await;
    let at = log
        .iter()
        .position(|l| l.contains("\"allowed\":false"))
        .unwrap();
    log[at] = log[at].replacen("\"allowed\":false", "\"allowed\":true ", 1);
    assert_eq!(broken_at(check(&ca, &log)), (at as u64 + 1, Broken::Edited));
}

#[tokio::test]
async fn a_deleted_record_is_reported_at_the_gap() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let mut log = written_log(&ca, dir.path(), 6).await;
    log.remove(2);
    assert_eq!(
        broken_at(check(&ca, &log)),
        (
            3,
            Broken::Deleted {
                expected: 2,
                found: 3
            }
        )
    );
    // The first record, too: the log no longer starts a chain.
    log.remove(0);
    assert_eq!(
        broken_at(check(&ca, &log)),
        (1, Broken::MissingStart { found: 1 })
    );
}

#[tokio::test]
async fn swapped_records_are_reported_as_reordered() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let mut log = written_log(&ca, dir.path(), 6).await;
    log.swap(1, 4);
    assert_eq!(
        broken_at(check(&ca, &log)),
        (
            2,
            Broken::Reordered {
                expected: 1,
                found: 4
            }
        )
    );
}

#[tokio::test]
async fn a_truncated_log_is_reported() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(&ca, dir.path(), 10).await;
    // Cut after the last periodic checkpoint's records: the final checkpoint is gone.
    let cut = &log[..log.len() - 2];
    let (line, broken) = broken_at(check(&ca, cut));
    assert_eq!(line, cut.len() as u64);
    assert!(
        matches!(broken, Broken::Unsealed { records } if records > 0),
        "{broken:?}"
    );
    // Cut exactly at a periodic checkpoint: sealed, but not by a clean shutdown.
    let periodic = log
        .iter()
        .rposition(|l| json(l)["type"] == "checkpoint" && json(l)["final"] == false)
        .unwrap();
    let cut = &log[..=periodic];
    assert_eq!(
        broken_at(check(&ca, cut)),
        (cut.len() as u64, Broken::Unsealed { records: 0 })
    );
    // A live log may end unsealed when the caller says so.
    let text = cut.iter().map(|l| format!("{l}\n")).collect::<String>();
    let options = VerifyOptions::default().allow_unsealed(true);
    let report = verify(text.as_bytes(), &ca.bundles(), &service(), &options).unwrap();
    assert_eq!(report.records, cut.len() as u64);
    // Cut in the middle of a line.
    let mut text = log.iter().map(|l| format!("{l}\n")).collect::<String>();
    text.truncate(text.len() - 10);
    let result = verify(text.as_bytes(), &ca.bundles(), &service(), &options);
    assert_eq!(broken_at(result), (log.len() as u64, Broken::Torn));
}

/// The final checkpoint replaced by one signed with `svid`, over the same seq and prev.
fn forge_final(log: &[String], svid: &ligand_runtime::X509Svid) -> Vec<String> {
    let mut log = log.to_vec();
    let last = log.len() - 1;
    let seq = json(&log[last])["seq"].as_u64().unwrap();
    let prev = audit_line_hash(&log[last - 1]);
    log[last] = audit_checkpoint_line(svid, seq, &prev, true, SystemTime::now());
    log
}

#[tokio::test]
async fn forged_checkpoints_are_refused() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let log = written_log(&ca, dir.path(), 4).await;
    let last = log.len() as u64;
    // The forger's helper is sound: with the service's own SVID the forgery verifies.
    check(&ca, &forge_final(&log, &ca.svid(SERVICE))).unwrap();

    // Another CA of the same trust domain, naming the service.
    let other = TestCa::new("example.org");
    let (line, broken) = broken_at(check(&ca, &forge_final(&log, &other.svid(SERVICE))));
    assert_eq!(line, last);
    assert!(matches!(broken, Broken::UntrustedSigner(_)), "{broken:?}");

    // The right CA, another workload.
    let (line, broken) = broken_at(check(&ca, &forge_final(&log, &ca.svid(CALLER))));
    assert_eq!(line, last);
    assert_eq!(
        broken,
        Broken::WrongSigner {
            expected: SERVICE.into(),
            found: CALLER.into()
        }
    );

    // The service's certificates, another key's signature.
    let genuine = json(log.last().unwrap());
    let foreign = json(forge_final(&log, &other.svid(SERVICE)).last().unwrap());
    let jws = genuine["jws"].as_str().unwrap();
    let signature = foreign["jws"].as_str().unwrap().rsplit('.').next().unwrap();
    let (signed, _) = jws.rsplit_once('.').unwrap();
    let mut forged = log.clone();
    let end = forged.len() - 1;
    forged[end] = forged[end].replace(jws, &format!("{signed}.{signature}"));
    let (line, broken) = broken_at(check(&ca, &forged));
    assert_eq!(line, last);
    assert!(matches!(broken, Broken::BadSignature(_)), "{broken:?}");

    // An unsigned field of the line changed: the line is not what the signature covers.
    let mut forged = log.clone();
    forged[end] = forged[end].replace("\"final\":true", "\"final\":false");
    let (line, broken) = broken_at(check(&ca, &forged));
    assert_eq!(line, last);
    assert!(matches!(broken, Broken::BadSignature(_)), "{broken:?}");
}

#[tokio::test]
async fn after_a_rotation_checkpoints_are_signed_with_the_new_key() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.jsonl");
    let server = server(&ca, &path, AuditChain::default().checkpoint_every(2)).await;
    for _ in 0..2 {
        server.enforce(request(CALLER)).await.unwrap();
    }
    server.flush_audit().await;
    identity_state(&server)
        .rotate(&ca.context(ca.svid(SERVICE)))
        .unwrap();
    for _ in 0..2 {
        server.enforce(request(CALLER)).await.unwrap();
    }
    server.close().await;
    let log = lines(&path);
    check(&ca, &log).unwrap();
    let leaves: Vec<String> = log
        .iter()
        .map(|l| json(l))
        .filter(|r| r["type"] == "checkpoint")
        .map(|r| {
            let jws = r["jws"].as_str().unwrap();
            jws.split('.').next().unwrap().to_owned()
        })
        .collect();
    assert!(leaves.len() >= 2);
    assert_ne!(
        leaves.first(),
        leaves.last(),
        "the header (and its x5c) changed with the SVID"
    );
}

#[tokio::test]
async fn a_restarted_service_continues_the_chain_and_refuses_a_torn_log() {
    let ca = TestCa::new("example.org");
    let dir = tempfile::tempdir().unwrap();
    let first = written_log(&ca, dir.path(), 3).await;
    let both = written_log(&ca, dir.path(), 3).await;
    assert!(both.len() > first.len());
    assert_eq!(both[..first.len()], first[..]);
    let report = check(&ca, &both).unwrap();
    assert_eq!(report.records, both.len() as u64);

    // A log that ends mid-record is not appended to.
    let path = dir.path().join("audit.jsonl");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.truncate(text.len() - 5);
    std::fs::write(&path, text).unwrap();
    let error = JsonLinesTelemetry::chained_file(&path, AuditChain::default()).unwrap_err();
    assert!(error.to_string().contains("torn"), "{error}");
}

/// A sealed log of `records` metrics snapshots written by the sink alone, as the writer
/// thread would drive it.
fn sink_log(ca: &TestCa, records: usize) -> Vec<String> {
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let sink = JsonLinesTelemetry::new(buffer.clone())
        .with_chain(AuditChain::default().checkpoint_every(3));
    let identity = ligand_runtime::tls::IdentityState::new(&ca.context(ca.svid(SERVICE)), None);
    sink.attach_identity(&Arc::new(identity.unwrap()));
    for _ in 0..records {
        sink.record_metrics(&MetricsSnapshot::default()).unwrap();
    }
    sink.close().unwrap();
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    text.lines().map(str::to_owned).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any change of one byte, anywhere, is detected.
    #[test]
    fn any_edited_byte_is_detected(at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        static CA: std::sync::LazyLock<(TestCa, Vec<String>)> = std::sync::LazyLock::new(|| {
            let ca = TestCa::new("example.org");
            let log = sink_log(&ca, 8);
            (ca, log)
        });
        let (ca, log) = &*CA;
        let mut text = log.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
        let at = at.index(text.len());
        prop_assume!(text[at] != byte);
        text[at] = byte;
        let result = verify(&text[..], &ca.bundles(), &service(), &VerifyOptions::default());
        prop_assert!(result.is_err(), "byte {at} set to {byte} went unnoticed");
    }

    /// Deleting, duplicating or moving any one line is detected.
    #[test]
    fn any_removed_duplicated_or_moved_line_is_detected(
        from in any::<prop::sample::Index>(),
        to in any::<prop::sample::Index>(),
        how in 0..3u8,
    ) {
        static CA: std::sync::LazyLock<(TestCa, Vec<String>)> = std::sync::LazyLock::new(|| {
            let ca = TestCa::new("example.org");
            let log = sink_log(&ca, 8);
            (ca, log)
        });
        let (ca, log) = &*CA;
        let mut log = log.clone();
        let from = from.index(log.len());
        let to = to.index(log.len());
        match how {
            0 => { log.remove(from); }
            1 => { let line = log[from].clone(); log.insert(to, line); }
            _ => { prop_assume!(from != to); let line = log.remove(from); log.insert(to, line); }
        }
        prop_assert!(check(ca, &log).is_err());
    }
}
