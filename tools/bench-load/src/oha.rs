//! The load generator: `oha` with the client SVID, its command line and its JSON report.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::Result;
use crate::identity::CertPaths;
use crate::process::Spawned;

/// How long past its own duration an oha run may take (connecting, waiting for the requests
/// in flight at the deadline, writing the report) before it is stopped.
const OVERRUN: Duration = Duration::from_secs(30);

/// The error oha records for requests cut off by `-z` (none with `-w`, which waits for them).
const DEADLINE_ERROR: &str = "aborted due to deadline";

/// One load: where, how long, how many connections and, optionally, at what rate.
#[derive(Debug, Clone)]
pub(crate) struct Load {
    /// The server's loopback port.
    pub(crate) port: u16,
    /// The request path; with `random`, a pattern oha expands per request.
    pub(crate) path: &'static str,
    /// Whether `path` is a pattern (`--rand-regex-url`).
    pub(crate) random: bool,
    /// How long to send requests.
    pub(crate) duration: Duration,
    /// Keep-alive connections.
    pub(crate) connections: u32,
    /// A fixed request rate for all connections together; `None` sends as fast as answered.
    pub(crate) rate: Option<u64>,
}

impl Load {
    /// The target URL. The host is always 127.0.0.1: no load ever leaves the machine.
    pub(crate) fn url(&self) -> String {
        format!("https://{}:{}{}", Ipv4Addr::LOCALHOST, self.port, self.path)
    }

    /// oha's arguments for this load.
    pub(crate) fn args(&self, certs: &CertPaths) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec![
            "--no-tui".into(),
            "--output-format".into(),
            "json".into(),
            "-z".into(),
            format!("{}ms", self.duration.as_millis()).into(),
            "-c".into(),
            self.connections.to_string().into(),
            // Wait for the requests in flight at the deadline rather than abort them, so
            // every request the servers worked on is counted.
            "-w".into(),
            // The servers present SVIDs (a SPIFFE ID, no DNS name): oha cannot verify them
            // by name, but it still presents its own certificate, which every server checks.
            "--insecure".into(),
            "--cert".into(),
            certs.client_cert().into(),
            "--key".into(),
            certs.client_key().into(),
        ];
        if let Some(rate) = self.rate {
            args.extend([
                "-q".into(),
                rate.to_string().into(),
                // Latency from each request's scheduled start, not its actual one, so a
                // stall is not hidden by the requests it delayed (coordinated omission).
                "--latency-correction".into(),
            ]);
        }
        if self.random {
            args.push("--rand-regex-url".into());
        }
        args.push(self.url().into());
        args
    }
}

impl Load {
    /// The whole command line, for the report.
    pub(crate) fn command_line(&self, oha: &Path, certs: &CertPaths) -> String {
        let mut line = oha.display().to_string();
        for arg in self.args(certs) {
            line.push(' ');
            line.push_str(&arg.to_string_lossy());
        }
        line
    }
}

/// What one load measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct LoadResult {
    /// Wall time of the load, in seconds.
    pub(crate) seconds: f64,
    /// Responses received, whatever their status.
    pub(crate) responses: u64,
    /// Responses with a status other than 2xx.
    pub(crate) non_2xx: u64,
    /// Requests that got no response (connection and TLS errors), deadline aborts excluded.
    pub(crate) errors: u64,
    /// Responses per second.
    pub(crate) rps: f64,
    /// Median latency, in milliseconds.
    pub(crate) p50_ms: f64,
    /// 99th percentile latency, in milliseconds.
    pub(crate) p99_ms: f64,
    /// Responses per HTTP status code.
    pub(crate) status_codes: BTreeMap<String, u64>,
}

impl LoadResult {
    /// Two loads as one: counts and time added up, the rate over the total time, the
    /// latency percentiles averaged.
    pub(crate) fn combined(&self, other: &Self) -> Self {
        let seconds = self.seconds + other.seconds;
        let responses = self.responses + other.responses;
        let mut status_codes = self.status_codes.clone();
        for (code, count) in &other.status_codes {
            *status_codes.entry(code.clone()).or_default() += count;
        }
        Self {
            seconds,
            responses,
            non_2xx: self.non_2xx + other.non_2xx,
            errors: self.errors + other.errors,
            rps: if seconds > 0.0 {
                responses as f64 / seconds
            } else {
                0.0
            },
            p50_ms: (self.p50_ms + other.p50_ms) / 2.0,
            p99_ms: (self.p99_ms + other.p99_ms) / 2.0,
            status_codes,
        }
    }
}

/// The parts of oha's JSON report the harness reads.
#[derive(Debug, Deserialize)]
struct Report {
    /// Totals.
    summary: Summary,
    /// `"p50"` → seconds; `null` when nothing completed.
    #[serde(rename = "latencyPercentiles")]
    latency_percentiles: BTreeMap<String, Option<f64>>,
    /// Status code → responses.
    #[serde(rename = "statusCodeDistribution")]
    status_codes: BTreeMap<String, u64>,
    /// Error message → requests.
    #[serde(rename = "errorDistribution")]
    errors: BTreeMap<String, u64>,
}

/// oha's `summary` object.
#[derive(Debug, Deserialize)]
struct Summary {
    /// Wall time of the run, in seconds.
    total: f64,
}

/// Reads oha's JSON report.
pub(crate) fn parse(json: &str) -> Result<LoadResult> {
    let report: Report = serde_json::from_str(json)?;
    let responses: u64 = report.status_codes.values().sum();
    let non_2xx = report
        .status_codes
        .iter()
        .filter(|(code, _)| !code.starts_with('2'))
        .map(|(_, n)| n)
        .sum();
    let errors = report
        .errors
        .iter()
        .filter(|(message, _)| message.as_str() != DEADLINE_ERROR)
        .map(|(_, n)| n)
        .sum();
    let percentile = |name: &str| -> Result<f64> {
        match report.latency_percentiles.get(name) {
            Some(Some(seconds)) => Ok(seconds * 1e3),
            _ => Err(format!("oha reported no {name} latency (no request completed)").into()),
        }
    };
    if report.summary.total <= 0.0 {
        return Err("oha reported a run of no duration".into());
    }
    Ok(LoadResult {
        seconds: report.summary.total,
        responses,
        non_2xx,
        errors,
        rps: responses as f64 / report.summary.total,
        p50_ms: percentile("p50")?,
        p99_ms: percentile("p99")?,
        status_codes: report.status_codes,
    })
}

/// Runs `load` with the oha at `oha`, stderr to `log`, and reads its report. Bounded: a run
/// still going [`OVERRUN`] past its duration is stopped and is an error.
pub(crate) fn run(oha: &Path, load: &Load, certs: &CertPaths, log: &Path) -> Result<LoadResult> {
    let mut command = Command::new(oha);
    command.args(load.args(certs));
    let mut process = Spawned::start_piped("oha", &mut command, log)?;
    let mut stdout = process.take_stdout().ok_or("oha's stdout was not piped")?;
    // Read while it runs: a report larger than the pipe buffer would otherwise block it.
    let reader = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let status = process.wait_timeout(load.duration + OVERRUN)?;
    process.stop();
    let text = reader
        .join()
        .map_err(|_| "the thread reading oha's output panicked")??;
    match status {
        Some(status) if status.success() => parse(&text),
        Some(status) => Err(format!(
            "oha failed ({status}) on {}; see {}",
            load.url(),
            log.display()
        )
        .into()),
        None => Err(format!("oha did not finish within {OVERRUN:?} of its duration").into()),
    }
}

/// `oha --version`, for the report.
pub(crate) fn version(oha: &Path) -> Result<String> {
    let output = Command::new(oha).arg("--version").output().map_err(|e| {
        format!(
            "cannot run {} ({e}); scripts/bench-load installs it with `cargo install oha --locked`",
            oha.display()
        )
    })?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Trimmed from a real `oha --output-format json` report (oha 1.16).
    const REPORT: &str = r#"{
      "summary": {"successRate": 1.0, "total": 3.0021, "slowest": 0.0191, "fastest": 0.0002,
                  "average": 0.0011, "requestsPerSec": 28001.2, "totalData": 7560000,
                  "sizePerRequest": 90, "sizePerSec": 2518000.0},
      "responseTimeHistogram": {"0.0002": 1},
      "latencyPercentiles": {"p10": 0.0006, "p25": 0.0008, "p50": 0.00105, "p75": 0.0013,
                             "p90": 0.0016, "p95": 0.0019, "p99": 0.0031, "p99.9": 0.008,
                             "p99.99": 0.019},
      "rps": {"mean": 28000.0, "stddev": 100.0, "max": 29000.0, "min": 27000.0,
              "percentiles": {"p50": 28000.0}},
      "details": {"DNSDialup": {"average": 0.001, "fastest": 0.001, "slowest": 0.002},
                  "DNSLookup": {"average": 0.0, "fastest": 0.0, "slowest": 0.0},
                  "firstByte": {"average": 0.001, "fastest": 0.0001, "slowest": 0.019}},
      "statusCodeDistribution": {"200": 84000, "403": 6},
      "errorDistribution": {"aborted due to deadline": 32, "connection closed": 2}
    }"#;

    #[test]
    fn report_gives_rps_latency_and_failures() {
        let result = parse(REPORT).unwrap();
        assert_eq!(result.responses, 84006);
        assert_eq!(result.non_2xx, 6);
        assert_eq!(result.errors, 2, "deadline aborts are not server errors");
        assert!((result.rps - 84006.0 / 3.0021).abs() < 1e-6);
        assert!((result.p50_ms - 1.05).abs() < 1e-9);
        assert!((result.p99_ms - 3.1).abs() < 1e-9);
    }

    #[test]
    fn two_windows_add_up_to_one_load() {
        let window = |seconds: f64, responses: u64, p50_ms: f64| LoadResult {
            seconds,
            responses,
            non_2xx: 1,
            errors: 2,
            rps: responses as f64 / seconds,
            p50_ms,
            p99_ms: p50_ms * 4.0,
            status_codes: [("200".to_owned(), responses - 1), ("503".to_owned(), 1)].into(),
        };
        let both = window(3.0, 30_000, 1.0).combined(&window(2.0, 10_000, 2.0));
        assert_eq!(both.seconds, 5.0);
        assert_eq!(both.responses, 40_000);
        assert_eq!(both.rps, 8_000.0);
        assert_eq!((both.non_2xx, both.errors), (2, 4));
        assert_eq!((both.p50_ms, both.p99_ms), (1.5, 6.0));
        assert_eq!(both.status_codes["200"], 39_998);
        assert_eq!(both.status_codes["503"], 2);
    }

    #[test]
    fn report_without_latencies_is_an_error() {
        let empty = r#"{"summary": {"total": 3.0}, "latencyPercentiles": {"p50": null,
            "p99": null}, "statusCodeDistribution": {}, "errorDistribution":
            {"connection refused": 5}}"#;
        let error = parse(empty).unwrap_err().to_string();
        assert!(error.contains("p50"), "{error}");
    }

    #[test]
    fn fixed_rate_random_load_has_every_flag() {
        let certs = CertPaths::new(Path::new("/tmp/certs"));
        let load = Load {
            port: 8443,
            path: crate::account::RANDOM_PATH,
            random: true,
            duration: Duration::from_secs(10),
            connections: 32,
            rate: Some(5000),
        };
        let args: Vec<String> = load
            .args(&certs)
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let expected = "--no-tui --output-format json -z 10000ms -c 32 -w --insecure \
                        --cert /tmp/certs/client.pem --key /tmp/certs/client.key -q 5000 \
                        --latency-correction --rand-regex-url \
                        https://127.0.0.1:8443/accounts/[0-9]{8}";
        assert_eq!(args.join(" "), expected);
    }
}
