//! The `run` subcommand: starts every scenario's servers in turn, loads them with oha, reads
//! `/proc` around each load, stops everything it started and reports.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use ligand::SpiffeId;
use ligand::testkit::PeerClient;
use serde::Serialize;

use crate::account::{FIXED_PATH, RANDOM_PATH};
use crate::identity::{self, CertPaths, Role};
use crate::oha::{self, Load, LoadResult};
use crate::process::Spawned;
use crate::procfs::{self, Memory};
use crate::report::{self, Settings};
use crate::{Result, nginx, stats};

/// How long servers may take to answer their first request.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The `run` subcommand's options.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Rounds; every scenario runs once per round, plain first.
    #[arg(long, default_value_t = 3, conflicts_with = "quick")]
    rounds: u32,
    /// Length of each measured load (maximum throughput, then fixed rate).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration, conflicts_with = "quick")]
    duration: Duration,
    /// Keep-alive connections of every load.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// A smoke run: 1 round of 3 s loads.
    #[arg(long)]
    quick: bool,
    /// Unmeasured load before the measured ones, on fresh servers.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    warmup: Duration,
    /// Only these scenarios (repeatable); plain always runs, as the baseline.
    #[arg(long = "scenario", value_enum)]
    scenarios: Vec<Scenario>,
    /// Directory of the JSON report [default: target/bench-load in the workspace].
    #[arg(long)]
    out: Option<PathBuf>,
    /// The oha binary [default: oha on PATH, else in cargo's bin directory].
    #[arg(long)]
    oha: Option<PathBuf>,
    /// The nginx binary [default: nginx on PATH, else /usr/sbin/nginx].
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// Keep the temporary directory (certificates, configurations, logs) and print its path.
    #[arg(long)]
    keep_temp: bool,
}

/// What is being compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Scenario {
    /// axum + rustls mTLS: the baseline.
    Plain,
    /// nginx terminating mTLS in front of axum over plain HTTP.
    Sidecar,
    /// Ligand, policy decision cache on.
    CacheOn,
    /// Ligand, policy decision cache off.
    CacheOff,
    /// Plain, a random account id per request: the baseline of `HighCardinality`.
    PlainHighCardinality,
    /// Ligand, cache on, a random account id per request.
    HighCardinality,
}

impl Scenario {
    /// Every scenario, baseline first.
    pub(crate) const ALL: [Self; 6] = [
        Self::Plain,
        Self::Sidecar,
        Self::CacheOn,
        Self::CacheOff,
        Self::PlainHighCardinality,
        Self::HighCardinality,
    ];

    /// The name in the table.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Sidecar => "sidecar",
            Self::CacheOn => "ligand cache-on",
            Self::CacheOff => "ligand cache-off",
            Self::PlainHighCardinality => "plain high-card",
            Self::HighCardinality => "ligand high-card",
        }
    }

    /// What the scenario's ratios compare it with, in each round: plain under the same
    /// load. Random paths change the cost of a request for any server (oha generates each
    /// URL, and the response differs), so the high-cardinality load is compared with plain
    /// under that load.
    pub(crate) fn baseline(self) -> Self {
        match self {
            Self::HighCardinality => Self::PlainHighCardinality,
            _ => Self::Plain,
        }
    }

    /// The requested path, and whether it is a pattern expanded per request.
    fn path(self) -> (&'static str, bool) {
        match self {
            Self::HighCardinality | Self::PlainHighCardinality => (RANDOM_PATH, true),
            _ => (FIXED_PATH, false),
        }
    }
}

/// One scenario in one round.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RunRecord {
    /// The scenario.
    pub(crate) scenario: Scenario,
    /// The round, from 1.
    pub(crate) round: u32,
    /// The maximum-throughput load.
    pub(crate) max: Phase,
    /// The fixed-rate load.
    pub(crate) fixed: Phase,
    /// The rate of the fixed-rate load: half of plain's maximum in this round.
    pub(crate) fixed_rate: u64,
    /// Server processes measured (nginx master and workers and the backend for the sidecar).
    pub(crate) processes: usize,
    /// Memory and threads sampled halfway through the maximum-throughput load.
    pub(crate) mid_run: Memory,
    /// Memory after both loads (`hwm_kib` is the peak over the processes' lives).
    pub(crate) after: Memory,
    /// Decision events in the Ligand service's audit log (all its requests, warm-up and
    /// readiness probe included); `None` for the other scenarios.
    pub(crate) audit_decisions: Option<u64>,
    /// The scenario's baseline, run next to it in the same round: fresh servers of its own,
    /// loaded in the windows between the scenario's. `None` for plain, and in reports made
    /// before the baseline was paired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paired: Option<Paired>,
}

/// A scenario's baseline, measured in windows alternating with the scenario's own: baseline,
/// scenario, scenario, baseline, for each load, each window half the load's duration. The
/// machine's speed drifts by tens of percent over minutes on a shared host; a baseline run
/// a minute or two earlier in the round carried that drift into every ratio, while windows
/// seconds apart in mirrored order share it and cancel a steady trend.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Paired {
    /// The baseline scenario (plain, or plain under random paths).
    pub(crate) scenario: Scenario,
    /// Its maximum-throughput windows, together.
    pub(crate) max: Phase,
    /// Its fixed-rate windows, together (at the scenario's fixed rate).
    pub(crate) fixed: Phase,
    /// Its memory after the loads.
    pub(crate) after: Memory,
}

/// One load and the server CPU it cost.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    /// The oha command line, as run.
    pub(crate) command: String,
    /// What oha measured.
    #[serde(flatten)]
    pub(crate) load: LoadResult,
    /// CPU time of every server process during the load, in clock ticks.
    pub(crate) cpu_ticks: u64,
    /// CPU time per completed request, in microseconds.
    pub(crate) cpu_us_per_request: Option<f64>,
}

impl Phase {
    /// Two windows of one load as one: requests, time and CPU added up, and the windows'
    /// latency percentiles averaged (oha reports percentiles, not the latencies behind them).
    fn combined(first: Self, second: &Self, micros_per_tick: f64) -> Self {
        let load = first.load.combined(&second.load);
        let cpu_ticks = first.cpu_ticks.saturating_add(second.cpu_ticks);
        Self {
            command: first.command,
            cpu_us_per_request: stats::cpu_micros_per_request(
                cpu_ticks,
                micros_per_tick,
                load.responses,
            ),
            load,
            cpu_ticks,
        }
    }
}

/// Everything a scenario needs that does not change between scenarios.
struct Harness {
    /// Run settings.
    settings: Settings,
    /// This binary, started again for each server.
    exe: PathBuf,
    /// The oha binary.
    oha: PathBuf,
    /// The nginx binary.
    nginx: PathBuf,
    /// The run's temporary directory.
    temp: PathBuf,
    /// The identity files.
    certs: CertPaths,
    /// The RBAC policy folder.
    policy: PathBuf,
    /// The readiness probe: an mTLS client holding the client SVID.
    probe: PeerClient,
    /// The runtime the probe runs on.
    runtime: tokio::runtime::Runtime,
    /// Microseconds per `/proc` clock tick.
    micros_per_tick: f64,
}

/// Runs the comparison: every round, every scenario; prints the table and writes the JSON.
pub(crate) fn run(args: &RunArgs) -> Result<()> {
    crate::process::stop_all_on_signal()?;
    let settings = Settings {
        rounds: if args.quick { 1 } else { args.rounds.max(1) },
        duration: if args.quick {
            Duration::from_secs(3)
        } else {
            args.duration
        },
        warmup: args.warmup,
        connections: args.connections.max(1),
    };
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| {
            args.scenarios.is_empty()
                || args.scenarios.contains(s)
                // Plain, and the baseline of every scenario asked for.
                || args.scenarios.iter().any(|asked| asked.baseline() == *s)
                || *s == Scenario::Plain
        })
        .collect();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
    let oha = args
        .oha
        .clone()
        .unwrap_or_else(|| locate("oha", cargo_home.map(|home| home.join("bin/oha"))));
    let nginx = args
        .nginx
        .clone()
        .unwrap_or_else(|| locate("nginx", Some(PathBuf::from("/usr/sbin/nginx"))));
    let oha_version = oha::version(&oha)?;
    let nginx_version = if scenarios.contains(&Scenario::Sidecar) {
        Some(nginx::version(&nginx)?)
    } else {
        None
    };
    let policy = workspace_root().join("providers/policy-regorus/benches/rbac");
    if !policy.join("rbac/data.json").is_file() {
        return Err(format!("no RBAC policy at {}", policy.display()).into());
    }

    let temp = tempfile::Builder::new()
        .prefix("ligand-bench-load-")
        .tempdir()?;
    let exe = std::env::current_exe()?;
    let certs_dir = temp.path().join("certs");
    let mut certs_step = Spawned::start(
        "certs",
        Command::new(&exe).arg("certs").arg("--dir").arg(&certs_dir),
        &temp.path().join("certs.log"),
    )?;
    match certs_step.wait_timeout(READY_TIMEOUT)? {
        Some(status) if status.success() => {}
        _ => {
            return Err(format!(
                "the certs step failed; see {}",
                temp.path().join("certs.log").display()
            )
            .into());
        }
    }
    let client = identity::load_context(&certs_dir, Role::Client)?;
    let harness = Harness {
        settings,
        exe,
        oha,
        nginx,
        temp: temp.path().to_owned(),
        certs: CertPaths::new(&certs_dir),
        policy,
        probe: PeerClient::new(&client, Some(&SpiffeId::new(identity::SERVER_ID)?))?,
        runtime: tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        micros_per_tick: procfs::micros_per_tick(),
    };

    let mut records = Vec::new();
    for round in 1..=settings.rounds {
        let mut plain_rps = None;
        for scenario in round_order(&scenarios, round) {
            eprintln!(
                "round {round}/{}: {} ...",
                settings.rounds,
                scenario.label()
            );
            let record = harness.measure(scenario, round, plain_rps)?;
            eprintln!(
                "  {:.0} rps, p99 {:.2} ms; at {} rps p99 {:.2} ms",
                record.max.load.rps,
                record.max.load.p99_ms,
                record.fixed_rate,
                record.fixed.load.p99_ms
            );
            warn_failures(&record);
            if scenario == Scenario::Plain {
                plain_rps = Some(record.max.load.rps);
            }
            records.push(record);
        }
    }

    let report = report::Report::new(settings, oha_version, nginx_version, records);
    println!("{}", report.table());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| workspace_root().join("target/bench-load"));
    let written = report.write_json(&out)?;
    println!("JSON: {}", written.display());
    if args.keep_temp {
        println!("kept: {}", temp.keep().display());
    }
    Ok(())
}

/// The scenarios of `round` in order: plain first (the fixed rate comes from it), then the
/// others rotated by one place per round, so that no scenario always follows the same one.
fn round_order(scenarios: &[Scenario], round: u32) -> Vec<Scenario> {
    let mut others: Vec<Scenario> = scenarios
        .iter()
        .copied()
        .filter(|s| *s != Scenario::Plain)
        .collect();
    if !others.is_empty() {
        let shift = (round.saturating_sub(1) as usize) % others.len();
        others.rotate_left(shift);
    }
    let mut order = vec![Scenario::Plain];
    order.extend(others);
    order
}

/// Prints what would make a record's comparison invalid.
fn warn_failures(record: &RunRecord) {
    for (name, phase) in [("max", &record.max), ("fixed-rate", &record.fixed)] {
        if phase.load.non_2xx > 0 || phase.load.errors > 0 {
            eprintln!(
                "  WARNING: {} {name}: {} non-2xx responses, {} failed requests",
                record.scenario.label(),
                phase.load.non_2xx,
                phase.load.errors
            );
        }
    }
}

/// `name` when it is on `PATH` (or when nothing else exists), else `fallback`: the places
/// `scripts/bench-load` installs to, which a root shell's `PATH` may lack.
fn locate(name: &str, fallback: Option<PathBuf>) -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(name).is_file()));
    match fallback {
        Some(fallback) if !on_path && fallback.is_file() => fallback,
        _ => PathBuf::from(name),
    }
}

/// The workspace this binary was built from.
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.ancestors().nth(2).unwrap_or(manifest).to_owned()
}

/// A free loopback port. Another process could take it before the server binds it; the
/// readiness check then fails loudly rather than measuring the wrong server.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// A scenario's servers, started, ready and warmed up.
struct Running {
    /// The scenario.
    scenario: Scenario,
    /// The port the load goes to.
    port: u16,
    /// Where its logs go.
    dir: PathBuf,
    /// Every server PID, helpers included, as of the end of the warm-up.
    pids: Vec<u32>,
    /// The processes.
    deployment: Deployment,
}

/// The server processes of one scenario.
struct Deployment {
    /// Every process, stopped in reverse order of start on drop.
    processes: Vec<Spawned>,
    /// The Ligand service's stdout (its audit log).
    audit_log: Option<PathBuf>,
}

impl Deployment {
    /// Every server PID, helpers (nginx's workers) included.
    fn pids(&mut self) -> Vec<u32> {
        let mut pids = Vec::new();
        for process in &mut self.processes {
            pids.push(process.pid());
            pids.extend(process.adopt_children());
        }
        pids
    }

    /// Stops every process, last started first.
    fn stop(&mut self) {
        while let Some(mut process) = self.processes.pop() {
            process.stop();
        }
    }
}

impl Harness {
    /// Starts `scenario`'s servers (and, for any scenario but plain, its baseline's), loads
    /// them and stops them.
    fn measure(&self, scenario: Scenario, round: u32, plain_rps: Option<f64>) -> Result<RunRecord> {
        let mut subject = self.launch(scenario, round, "")?;
        let mut baseline = match scenario {
            Scenario::Plain => None,
            other => Some(self.launch(other.baseline(), round, "-paired")?),
        };
        let duration = self.settings.duration;
        // Memory and threads halfway through the scenario's first maximum-throughput window:
        // alone, the middle of the load; paired, the middle of the window that follows the
        // baseline's first (see `load`).
        let sampler = {
            let pids = subject.pids.clone();
            let at = match baseline {
                None => duration / 2,
                Some(_) => duration * 3 / 4,
            };
            thread::spawn(move || {
                thread::sleep(at);
                procfs::memory(&pids)
            })
        };
        let (max, paired_max) = self.load(&subject, baseline.as_ref(), duration, None)?;
        let mid_run = sampler
            .join()
            .map_err(|_| "the mid-run sampler panicked")??;
        let fixed_rate = stats::half_rate(plain_rps.unwrap_or(max.load.rps));
        let (fixed, paired_fixed) =
            self.load(&subject, baseline.as_ref(), duration, Some(fixed_rate))?;
        let after = procfs::memory(&subject.pids)?;
        subject.deployment.stop();
        let paired = match (&mut baseline, paired_max, paired_fixed) {
            (Some(baseline), Some(max), Some(fixed)) => {
                let after = procfs::memory(&baseline.pids)?;
                baseline.deployment.stop();
                Some(Paired {
                    scenario: baseline.scenario,
                    max,
                    fixed,
                    after,
                })
            }
            _ => None,
        };
        let audit_decisions = subject
            .deployment
            .audit_log
            .as_deref()
            .map(count_decisions)
            .transpose()?;
        Ok(RunRecord {
            scenario,
            round,
            max,
            fixed,
            fixed_rate,
            processes: subject.pids.len(),
            mid_run,
            after,
            audit_decisions,
            paired,
        })
    }

    /// Starts `scenario`'s servers, waits until they answer and warms them up.
    fn launch(&self, scenario: Scenario, round: u32, suffix: &str) -> Result<Running> {
        let port = free_port()?;
        let dir = self
            .temp
            .join(format!("r{round}-{scenario:?}{suffix}").to_lowercase());
        fs::create_dir_all(&dir)?;
        let mut deployment = self.start(scenario, port, &dir)?;
        let (path, random) = scenario.path();
        let probe_path = if random { FIXED_PATH } else { path };
        self.wait_ready(&mut deployment, port, probe_path)?;
        let mut running = Running {
            scenario,
            port,
            dir,
            pids: Vec::new(),
            deployment,
        };
        if !self.settings.warmup.is_zero() {
            oha::run(
                &self.oha,
                &self.load_of(&running, self.settings.warmup, None),
                &self.certs,
                &running.dir.join("oha-warmup.log"),
            )?;
        }
        running.pids = running.deployment.pids();
        Ok(running)
    }

    /// The load of `duration` (at `rate`, or as fast as answered) on `running`.
    fn load_of(&self, running: &Running, duration: Duration, rate: Option<u64>) -> Load {
        let (path, random) = running.scenario.path();
        Load {
            port: running.port,
            path,
            random,
            duration,
            connections: self.settings.connections,
            rate,
        }
    }

    /// One load of `subject`. Alone, one window of `duration`; with a `baseline`, windows of
    /// half of it in the order baseline, subject, subject, baseline (see [`Paired`]), each
    /// server's two added up.
    fn load(
        &self,
        subject: &Running,
        baseline: Option<&Running>,
        duration: Duration,
        rate: Option<u64>,
    ) -> Result<(Phase, Option<Phase>)> {
        let name = if rate.is_some() { "fixed" } else { "max" };
        let window = |running: &Running, duration: Duration, log: &str| {
            self.phase(
                &running.pids,
                &self.load_of(running, duration, rate),
                &running.dir.join(format!("oha-{log}.log")),
            )
        };
        let Some(baseline) = baseline else {
            return Ok((window(subject, duration, name)?, None));
        };
        let half = duration / 2;
        let baseline_first = window(baseline, half, &format!("{name}-1"))?;
        let subject_first = window(subject, half, &format!("{name}-1"))?;
        let subject_second = window(subject, half, &format!("{name}-2"))?;
        let baseline_second = window(baseline, half, &format!("{name}-2"))?;
        let tick = self.micros_per_tick;
        Ok((
            Phase::combined(subject_first, &subject_second, tick),
            Some(Phase::combined(baseline_first, &baseline_second, tick)),
        ))
    }

    /// One measured load: server CPU read from `/proc` just before and just after it.
    fn phase(&self, pids: &[u32], load: &Load, log: &Path) -> Result<Phase> {
        let before = procfs::cpu_ticks(pids)?;
        let result = oha::run(&self.oha, load, &self.certs, log)?;
        let cpu_ticks = procfs::cpu_ticks(pids)?.saturating_sub(before);
        let cpu_us_per_request =
            stats::cpu_micros_per_request(cpu_ticks, self.micros_per_tick, result.responses);
        Ok(Phase {
            command: load.command_line(&self.oha, &self.certs),
            load: result,
            cpu_ticks,
            cpu_us_per_request,
        })
    }

    /// Starts the servers of `scenario`, the one under load on `port`; logs go to `dir`.
    fn start(&self, scenario: Scenario, port: u16, dir: &Path) -> Result<Deployment> {
        let server = |name: &str| {
            let mut command = Command::new(&self.exe);
            command.arg(name);
            command
        };
        let mut deployment = Deployment {
            processes: Vec::new(),
            audit_log: None,
        };
        match scenario {
            Scenario::Plain | Scenario::PlainHighCardinality => {
                let mut command = server("plain");
                command
                    .arg("--certs")
                    .arg(self.certs_dir())
                    .arg("--port")
                    .arg(port.to_string());
                deployment.processes.push(Spawned::start(
                    "plain",
                    &mut command,
                    &dir.join("plain.log"),
                )?);
            }
            Scenario::Sidecar => {
                let backend_port = free_port()?;
                let mut command = server("backend");
                command.arg("--port").arg(backend_port.to_string());
                deployment.processes.push(Spawned::start(
                    "backend",
                    &mut command,
                    &dir.join("backend.log"),
                )?);
                deployment.processes.push(nginx::start(
                    &self.nginx,
                    &dir.join("nginx"),
                    &self.certs,
                    port,
                    backend_port,
                )?);
            }
            Scenario::CacheOn | Scenario::CacheOff | Scenario::HighCardinality => {
                let cache = if scenario == Scenario::CacheOff {
                    "off"
                } else {
                    "on"
                };
                let mut command = server("ligand");
                command
                    .arg("--certs")
                    .arg(self.certs_dir())
                    .arg("--policy")
                    .arg(&self.policy)
                    .arg("--port")
                    .arg(port.to_string())
                    .arg("--cache")
                    .arg(cache)
                    // Production's level, whatever the caller's environment says.
                    .env("RUST_LOG", "info");
                let log = dir.join("ligand.stdout.log");
                deployment
                    .processes
                    .push(Spawned::start("ligand", &mut command, &log)?);
                deployment.audit_log = Some(log);
            }
        }
        Ok(deployment)
    }

    /// Waits until `GET path` over mTLS answers 200, checking that no server has exited.
    fn wait_ready(&self, deployment: &mut Deployment, port: u16, path: &str) -> Result<()> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let deadline = Instant::now() + READY_TIMEOUT;
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            for process in &mut deployment.processes {
                process.ensure_running()?;
            }
            let answer = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), self.probe.get(addr, path)).await
            });
            match answer {
                Ok(Ok(response)) if response.status == 200 => return Ok(()),
                Ok(Ok(response)) => last = format!("{} {}", response.status, response.text()),
                Ok(Err(error)) => last = error.to_string(),
                Err(_) => last = "timed out".into(),
            }
            thread::sleep(Duration::from_millis(100));
        }
        Err(format!("GET {path} on {addr} never answered 200 (last: {last})").into())
    }

    /// The directory the certs step wrote.
    fn certs_dir(&self) -> PathBuf {
        self.temp.join("certs")
    }
}

/// The decision events in a Ligand audit log.
fn count_decisions(log: &Path) -> Result<u64> {
    let text = fs::read_to_string(log).map_err(|e| format!("{}: {e}", log.display()))?;
    Ok(text
        .lines()
        .filter(|line| line.contains(" audit decision "))
        .count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_leads_every_round_and_the_others_rotate() {
        let all = Scenario::ALL;
        assert_eq!(round_order(&all, 1), all.to_vec());
        assert_eq!(
            round_order(&all, 2),
            vec![
                Scenario::Plain,
                Scenario::CacheOn,
                Scenario::CacheOff,
                Scenario::PlainHighCardinality,
                Scenario::HighCardinality,
                Scenario::Sidecar
            ]
        );
        assert_eq!(round_order(&all, 6), round_order(&all, 1));
        assert_eq!(round_order(&[Scenario::Plain], 3), vec![Scenario::Plain]);
    }

    #[test]
    fn decisions_are_counted_from_audit_lines_only() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ligand.stdout.log");
        fs::write(
            &log,
            "2026-01-01T00:00:00Z  INFO ligand_runtime::server: listening\n\
             2026-01-01T00:00:01.000000Z audit decision request_id=a allowed=true\n\
             2026-01-01T00:00:01Z  INFO ligand_runtime::server: a log line about a decision\n\
             2026-01-01T00:00:01.000001Z audit decision request_id=b allowed=false\n",
        )
        .unwrap();
        assert_eq!(count_decisions(&log).unwrap(), 2);
    }

    #[test]
    fn the_rbac_policy_is_where_the_harness_looks() {
        let policy = workspace_root().join("providers/policy-regorus/benches/rbac");
        assert!(policy.join("rbac/data.json").is_file());
        assert!(policy.join("ligand/authz/policy.rego").is_file());
    }
}
