//! The comparison: medians over rounds and ratios to plain, as a table and as JSON.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::Result;
use crate::procfs::Memory;
use crate::run::{Paired, Phase, RunRecord, Scenario};
use crate::stats::{median, ratio};

/// KiB in a MiB.
const KIB_PER_MIB: f64 = 1024.0;

/// The share of the fixed rate a scenario must achieve to count as having sustained it.
/// Below it, requests queue, and the fixed-rate latencies measure the queue, not the cost.
const SUSTAINED: f64 = 0.95;

/// How the loads were run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Rounds of every scenario.
    pub(crate) rounds: u32,
    /// Length of each measured load.
    pub(crate) duration: Duration,
    /// Length of the unmeasured warm-up.
    pub(crate) warmup: Duration,
    /// Keep-alive connections of every load.
    pub(crate) connections: u32,
}

/// The whole report, as written to JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    /// When the report was made, in seconds since the Unix epoch.
    generated_unix: u64,
    /// The machine and the tools.
    environment: Environment,
    /// Rounds, durations and connections.
    settings: SettingsJson,
    /// oha's command lines.
    oha_args: OhaArgs,
    /// Medians per scenario, plain first.
    summary: Vec<Summary>,
    /// Every scenario of every round.
    runs: Vec<RunRecord>,
}

/// What the run ran on.
#[derive(Debug, Serialize)]
struct Environment {
    /// CPUs available to the processes.
    cpus: usize,
    /// The kernel release.
    kernel: String,
    /// `oha --version`.
    oha: String,
    /// `nginx -v`, when the sidecar ran.
    nginx: Option<String>,
}

/// [`Settings`] in JSON units.
#[derive(Debug, Serialize)]
struct SettingsJson {
    /// Rounds.
    rounds: u32,
    /// Seconds per measured load.
    duration_s: f64,
    /// Seconds of warm-up.
    warmup_s: f64,
    /// Keep-alive connections.
    connections: u32,
}

/// oha's command lines in the first round (every run's are in `runs`).
#[derive(Debug, Serialize)]
struct OhaArgs {
    /// Plain's maximum-throughput load.
    max: Option<String>,
    /// Plain's fixed-rate load.
    fixed_rate: Option<String>,
    /// The high-cardinality scenario's maximum-throughput load.
    high_cardinality: Option<String>,
}

/// Medians over the rounds of one scenario.
#[derive(Debug, Clone, Serialize)]
struct Summary {
    /// The scenario.
    scenario: Scenario,
    /// Rounds measured.
    rounds: usize,
    /// Maximum throughput, responses per second.
    max_rps: Option<f64>,
    /// Median latency at maximum throughput, ms.
    max_p50_ms: Option<f64>,
    /// p99 latency at maximum throughput, ms.
    max_p99_ms: Option<f64>,
    /// Server CPU per request at maximum throughput, µs.
    max_cpu_us_per_request: Option<f64>,
    /// `VmRSS` after the loads, MiB.
    rss_mib: Option<f64>,
    /// `VmHWM` after the loads, MiB.
    hwm_mib: Option<f64>,
    /// Threads halfway through the maximum-throughput load.
    threads_mid_run: Option<f64>,
    /// The fixed rate, requests per second.
    fixed_rate: Option<f64>,
    /// Responses per second achieved under the fixed rate.
    fixed_achieved_rps: Option<f64>,
    /// Whether the median achieved rate was at least 95% of the fixed rate.
    fixed_sustained: Option<bool>,
    /// Median latency at the fixed rate, ms.
    fixed_p50_ms: Option<f64>,
    /// p99 latency at the fixed rate, ms.
    fixed_p99_ms: Option<f64>,
    /// Server CPU per request at the fixed rate, µs.
    fixed_cpu_us_per_request: Option<f64>,
    /// Relative to plain in the same round, median over rounds.
    vs_plain: VsPlain,
}

/// A scenario relative to plain: each figure is computed per round against the baseline run
/// alongside the scenario (`run::Paired`; in older reports, that round's plain run), then
/// the median over rounds is taken, so drift between and within rounds cancels out.
#[derive(Debug, Clone, Copy, Default, Serialize)]
struct VsPlain {
    /// Maximum throughput / plain's.
    rps_ratio: Option<f64>,
    /// CPU per request at maximum throughput / plain's.
    cpu_ratio: Option<f64>,
    /// `VmRSS` after the loads minus plain's, MiB.
    rss_delta_mib: Option<f64>,
    /// p50 at maximum throughput minus plain's, ms.
    p50_added_ms: Option<f64>,
    /// p99 at maximum throughput / plain's.
    p99_ratio: Option<f64>,
    /// p50 at the fixed rate minus plain's, ms.
    fixed_p50_added_ms: Option<f64>,
    /// p99 at the fixed rate / plain's.
    fixed_p99_ratio: Option<f64>,
    /// CPU per request at the fixed rate / plain's.
    fixed_cpu_ratio: Option<f64>,
}

impl Report {
    /// The report of `runs`.
    pub(crate) fn new(
        settings: Settings,
        oha: String,
        nginx: Option<String>,
        runs: Vec<RunRecord>,
    ) -> Self {
        let mut scenarios: Vec<Scenario> = Vec::new();
        for run in &runs {
            if !scenarios.contains(&run.scenario) {
                scenarios.push(run.scenario);
            }
        }
        scenarios.sort_by_key(|s| Scenario::ALL.iter().position(|a| a == s));
        let summary = scenarios.iter().map(|s| summarize(*s, &runs)).collect();
        // The commands of the first round, as run.
        let command = |scenario: Scenario, fixed: bool| {
            runs.iter().find(|r| r.scenario == scenario).map(|r| {
                if fixed {
                    r.fixed.command.clone()
                } else {
                    r.max.command.clone()
                }
            })
        };
        let oha_args = OhaArgs {
            max: command(Scenario::Plain, false),
            fixed_rate: command(Scenario::Plain, true),
            high_cardinality: command(Scenario::HighCardinality, false),
        };
        Self {
            generated_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            environment: Environment {
                cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
                kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default(),
                oha,
                nginx,
            },
            settings: SettingsJson {
                rounds: settings.rounds,
                duration_s: settings.duration.as_secs_f64(),
                warmup_s: settings.warmup.as_secs_f64(),
                connections: settings.connections,
            },
            oha_args,
            summary,
            runs,
        }
    }

    /// The human-readable table.
    pub(crate) fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nligand-bench-load: {} round(s) x {} s per load, {} keep-alive connections, \
             {} s warm-up, {} CPUs",
            s.rounds, s.duration_s, s.connections, s.warmup_s, self.environment.cpus
        );
        let _ = writeln!(
            out,
            "medians over rounds; ratios are medians of per-round ratios to plain run \
             alongside, window for window\n(ligand high-card's to plain high-card: the same \
             random paths)\n"
        );
        let _ = writeln!(out, "MAXIMUM THROUGHPUT");
        let _ = writeln!(
            out,
            "{:<17} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>7} {:>7} {:>6}",
            "scenario",
            "rps",
            "p50 ms",
            "p99 ms",
            "CPU us",
            "RSS MiB",
            "HWM MiB",
            "threads",
            "rps x",
            "CPU x",
            "RSS +MiB",
            "p50 +ms",
            "p99 x"
        );
        for row in &self.summary {
            let v = &row.vs_plain;
            let _ = writeln!(
                out,
                "{:<17} {:>8} {:>7} {:>7} {:>8} {:>7} {:>7} {:>7} | {:>6} {:>6} {:>7} {:>7} {:>6}",
                row.scenario.label(),
                num(row.max_rps, 0),
                num(row.max_p50_ms, 2),
                num(row.max_p99_ms, 2),
                num(row.max_cpu_us_per_request, 1),
                num(row.rss_mib, 1),
                num(row.hwm_mib, 1),
                num(row.threads_mid_run, 0),
                num(v.rps_ratio, 2),
                num(v.cpu_ratio, 2),
                signed(v.rss_delta_mib, 1),
                signed(v.p50_added_ms, 2),
                num(v.p99_ratio, 2),
            );
        }
        let rate = self.summary.first().and_then(|p| p.fixed_rate);
        let _ = writeln!(
            out,
            "\nFIXED RATE: half of plain's maximum in each round ({} rps median)",
            num(rate, 0)
        );
        let _ = writeln!(
            out,
            "{:<17} {:>9} {:>8} {:>8} {:>8} | {:>9} {:>6} {:>6}",
            "scenario", "rps", "p50 ms", "p99 ms", "CPU us", "p50 +ms", "p99 x", "CPU x"
        );
        for row in &self.summary {
            let v = &row.vs_plain;
            let mark = if row.fixed_sustained == Some(false) {
                "*"
            } else {
                " "
            };
            let _ = writeln!(
                out,
                "{:<17} {:>8}{mark} {:>8} {:>8} {:>8} | {:>9} {:>6} {:>6}",
                row.scenario.label(),
                num(row.fixed_achieved_rps, 0),
                num(row.fixed_p50_ms, 2),
                num(row.fixed_p99_ms, 2),
                num(row.fixed_cpu_us_per_request, 1),
                signed(v.fixed_p50_added_ms, 2),
                num(v.fixed_p99_ratio, 2),
                num(v.fixed_cpu_ratio, 2),
            );
        }
        if self
            .summary
            .iter()
            .any(|r| r.fixed_sustained == Some(false))
        {
            let _ = writeln!(
                out,
                "* achieved under {:.0}% of the fixed rate: requests queued, so its latencies \
                 measure the queue (from each request's scheduled start), not added cost.",
                SUSTAINED * 100.0
            );
        }
        let _ = writeln!(
            out,
            "\nCPU us: server CPU (utime+stime from /proc/<pid>/stat; sidecar = nginx master + \
             workers + backend) per completed request.\nRSS/HWM: VmRSS/VmHWM summed over the \
             server processes after the loads; threads: sampled mid-run."
        );
        for run in &self.runs {
            for (name, phase) in [("max", &run.max), ("fixed-rate", &run.fixed)] {
                if phase.load.non_2xx > 0 || phase.load.errors > 0 {
                    let _ = writeln!(
                        out,
                        "WARNING: round {} {} {name}: {} non-2xx, {} failed requests",
                        run.round,
                        run.scenario.label(),
                        phase.load.non_2xx,
                        phase.load.errors
                    );
                }
            }
        }
        out
    }

    /// Writes the report as `bench-load-<unix time>.json` and `latest.json` in `dir`;
    /// returns the first.
    pub(crate) fn write_json(&self, dir: &Path) -> Result<PathBuf> {
        fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let json = serde_json::to_string_pretty(self)?;
        let path = dir.join(format!("bench-load-{}.json", self.generated_unix));
        fs::write(&path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
        fs::write(dir.join("latest.json"), &json)?;
        Ok(path)
    }
}

/// The medians of `scenario` over its runs, and its per-round comparison with plain.
fn summarize(scenario: Scenario, runs: &[RunRecord]) -> Summary {
    let own: Vec<&RunRecord> = runs.iter().filter(|r| r.scenario == scenario).collect();
    let of = |f: &dyn Fn(&RunRecord) -> Option<f64>| {
        median(&own.iter().filter_map(|r| f(r)).collect::<Vec<_>>())
    };
    // Each run next to its baseline: the one measured alongside it when there is one (see
    // `run::Paired`), else its baseline's run of the same round (plain's, without one).
    let baseline_of = |run: &RunRecord, baseline: Scenario| {
        runs.iter()
            .find(|p| p.scenario == baseline && p.round == run.round)
            .map(Baseline::of_run)
    };
    let pairs: Vec<(&RunRecord, Baseline<'_>)> = own
        .iter()
        .filter_map(|run| {
            run.paired
                .as_ref()
                .map(Baseline::of_paired)
                .or_else(|| baseline_of(run, scenario.baseline()))
                .or_else(|| baseline_of(run, Scenario::Plain))
                .map(|baseline| (*run, baseline))
        })
        .collect();
    let paired = |f: &dyn Fn(&RunRecord, &Baseline<'_>) -> Option<f64>| {
        median(
            &pairs
                .iter()
                .filter_map(|(r, p)| f(r, p))
                .collect::<Vec<_>>(),
        )
    };
    let mib = |kib: u64| kib as f64 / KIB_PER_MIB;
    let fixed_rate = of(&|r| Some(r.fixed_rate as f64));
    let fixed_achieved_rps = of(&|r| Some(r.fixed.load.rps));
    Summary {
        scenario,
        rounds: own.len(),
        max_rps: of(&|r| Some(r.max.load.rps)),
        max_p50_ms: of(&|r| Some(r.max.load.p50_ms)),
        max_p99_ms: of(&|r| Some(r.max.load.p99_ms)),
        max_cpu_us_per_request: of(&|r| r.max.cpu_us_per_request),
        rss_mib: of(&|r| Some(mib(r.after.rss_kib))),
        hwm_mib: of(&|r| Some(mib(r.after.hwm_kib))),
        threads_mid_run: of(&|r| Some(r.mid_run.threads as f64)),
        fixed_rate,
        fixed_achieved_rps,
        fixed_sustained: fixed_rate
            .zip(fixed_achieved_rps)
            .map(|(rate, achieved)| achieved >= SUSTAINED * rate),
        fixed_p50_ms: of(&|r| Some(r.fixed.load.p50_ms)),
        fixed_p99_ms: of(&|r| Some(r.fixed.load.p99_ms)),
        fixed_cpu_us_per_request: of(&|r| r.fixed.cpu_us_per_request),
        vs_plain: VsPlain {
            rps_ratio: paired(&|r, p| ratio(r.max.load.rps, p.max.load.rps)),
            cpu_ratio: paired(&|r, p| ratio(r.max.cpu_us_per_request?, p.max.cpu_us_per_request?)),
            rss_delta_mib: paired(&|r, p| Some(mib(r.after.rss_kib) - mib(p.after.rss_kib))),
            p50_added_ms: paired(&|r, p| Some(r.max.load.p50_ms - p.max.load.p50_ms)),
            p99_ratio: paired(&|r, p| ratio(r.max.load.p99_ms, p.max.load.p99_ms)),
            fixed_p50_added_ms: paired(&|r, p| Some(r.fixed.load.p50_ms - p.fixed.load.p50_ms)),
            fixed_p99_ratio: paired(&|r, p| ratio(r.fixed.load.p99_ms, p.fixed.load.p99_ms)),
            fixed_cpu_ratio: paired(&|r, p| {
                ratio(r.fixed.cpu_us_per_request?, p.fixed.cpu_us_per_request?)
            }),
        },
    }
}

/// The figures a run is compared with.
struct Baseline<'a> {
    max: &'a Phase,
    fixed: &'a Phase,
    after: &'a Memory,
}

impl<'a> Baseline<'a> {
    fn of_run(run: &'a RunRecord) -> Self {
        Self {
            max: &run.max,
            fixed: &run.fixed,
            after: &run.after,
        }
    }

    fn of_paired(paired: &'a Paired) -> Self {
        Self {
            max: &paired.max,
            fixed: &paired.fixed,
            after: &paired.after,
        }
    }
}

/// `value` with `decimals`, or `-` when missing.
fn num(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// `value` with an explicit sign, or `-` when missing.
fn signed(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:+.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oha::LoadResult;

    fn record(
        scenario: Scenario,
        round: u32,
        rps: f64,
        p50: f64,
        cpu: f64,
        rss_kib: u64,
    ) -> RunRecord {
        let phase = |rps: f64| Phase {
            command: if rps < 10_000.0 {
                "oha -q 5000".into()
            } else {
                "oha".into()
            },
            load: LoadResult {
                seconds: 10.0,
                responses: (rps * 10.0) as u64,
                non_2xx: 0,
                errors: 0,
                rps,
                p50_ms: p50,
                p99_ms: p50 * 3.0,
                status_codes: [("200".to_owned(), (rps * 10.0) as u64)].into(),
            },
            cpu_ticks: 0,
            cpu_us_per_request: Some(cpu),
        };
        let memory = Memory {
            rss_kib,
            hwm_kib: rss_kib,
            threads: 3,
        };
        RunRecord {
            scenario,
            round,
            max: phase(rps),
            fixed: phase(rps / 2.0),
            fixed_rate: 5000,
            processes: 1,
            mid_run: memory,
            after: memory,
            audit_decisions: None,
            paired: None,
        }
    }

    #[test]
    fn ratios_pair_each_round_with_its_own_plain_run() {
        let runs = vec![
            record(Scenario::Plain, 1, 10_000.0, 1.0, 40.0, 10 * 1024),
            record(Scenario::CacheOn, 1, 5_000.0, 1.5, 80.0, 14 * 1024),
            // A slower second round: the per-round ratio stays 0.5.
            record(Scenario::Plain, 2, 8_000.0, 1.2, 40.0, 10 * 1024),
            record(Scenario::CacheOn, 2, 4_000.0, 1.7, 80.0, 15 * 1024),
            record(Scenario::Plain, 3, 9_000.0, 1.1, 40.0, 10 * 1024),
            record(Scenario::CacheOn, 3, 4_500.0, 1.6, 80.0, 16 * 1024),
        ];
        let ligand = summarize(Scenario::CacheOn, &runs);
        assert_eq!(ligand.rounds, 3);
        assert_eq!(ligand.max_rps, Some(4_500.0));
        let v = ligand.vs_plain;
        assert_eq!(v.rps_ratio, Some(0.5));
        assert_eq!(v.cpu_ratio, Some(2.0));
        assert_eq!(v.rss_delta_mib, Some(5.0));
        assert!((v.p50_added_ms.unwrap() - 0.5).abs() < 1e-9);
        // p99 = 3 x p50 in these records: per-round ratios 1.5, 1.42 and 1.45.
        assert!((v.p99_ratio.unwrap() - 1.6 / 1.1).abs() < 1e-9);

        let plain = summarize(Scenario::Plain, &runs);
        assert_eq!(plain.vs_plain.rps_ratio, Some(1.0));
        assert_eq!(plain.vs_plain.rss_delta_mib, Some(0.0));
    }

    #[test]
    fn a_baseline_run_alongside_is_preferred_to_the_rounds_plain_run() {
        let mut cache_on = record(Scenario::CacheOn, 1, 6_000.0, 1.5, 60.0, 14 * 1024);
        let alongside = record(Scenario::Plain, 1, 8_000.0, 1.0, 40.0, 12 * 1024);
        cache_on.paired = Some(Paired {
            scenario: Scenario::Plain,
            max: alongside.max,
            fixed: alongside.fixed,
            after: alongside.after,
        });
        let runs = vec![
            // Plain at the start of the round, on a faster machine.
            record(Scenario::Plain, 1, 12_000.0, 1.0, 30.0, 10 * 1024),
            cache_on,
        ];
        let v = summarize(Scenario::CacheOn, &runs).vs_plain;
        assert_eq!(v.rps_ratio, Some(0.75));
        assert_eq!(v.cpu_ratio, Some(1.5));
        assert_eq!(v.rss_delta_mib, Some(2.0));
        assert_eq!(v.fixed_cpu_ratio, Some(1.5));
        assert!((v.p50_added_ms.unwrap() - 0.5).abs() < 1e-9);
        // Plain's own row is its run's, unchanged.
        let plain = summarize(Scenario::Plain, &runs);
        assert_eq!(plain.max_rps, Some(12_000.0));
        assert_eq!(plain.vs_plain.rps_ratio, Some(1.0));
    }

    #[test]
    fn the_high_cardinality_load_is_compared_with_plain_under_the_same_load() {
        let runs = vec![
            record(Scenario::Plain, 1, 10_000.0, 1.0, 40.0, 10 * 1024),
            record(
                Scenario::PlainHighCardinality,
                1,
                12_000.0,
                1.0,
                40.0,
                10 * 1024,
            ),
            record(Scenario::HighCardinality, 1, 9_000.0, 1.0, 40.0, 10 * 1024),
        ];
        let high = summarize(Scenario::HighCardinality, &runs);
        assert_eq!(high.vs_plain.rps_ratio, Some(0.75));
        // Its baseline is compared with plain.
        let baseline = summarize(Scenario::PlainHighCardinality, &runs);
        assert_eq!(baseline.vs_plain.rps_ratio, Some(1.2));
        // Without its baseline's run (an older report), plain's.
        let without: Vec<RunRecord> = runs
            .into_iter()
            .filter(|r| r.scenario != Scenario::PlainHighCardinality)
            .collect();
        let high = summarize(Scenario::HighCardinality, &without);
        assert_eq!(high.vs_plain.rps_ratio, Some(0.9));
    }

    #[test]
    fn table_lists_every_scenario_with_missing_figures_as_dashes() {
        let mut cache_off = record(Scenario::CacheOff, 1, 5_000.0, 1.5, 80.0, 1024);
        cache_off.max.cpu_us_per_request = None;
        let runs = vec![
            record(Scenario::Plain, 1, 10_000.0, 1.0, 40.0, 1024),
            cache_off,
        ];
        let settings = Settings {
            rounds: 1,
            duration: Duration::from_secs(3),
            warmup: Duration::from_secs(1),
            connections: 32,
        };
        let report = Report::new(settings, "oha 1.16.0".into(), None, runs);
        let table = report.table();
        assert!(table.contains("plain"), "{table}");
        assert!(table.contains("ligand cache-off"), "{table}");
        let row = table
            .lines()
            .find(|l| l.starts_with("ligand cache-off"))
            .unwrap();
        assert!(row.contains(" - "), "{row}");
        // Its fixed-rate load achieved 2500 of 5000 rps: marked, with the footnote.
        let fixed_row = table
            .lines()
            .filter(|l| l.starts_with("ligand cache-off"))
            .nth(1)
            .unwrap();
        assert!(fixed_row.contains("2500*"), "{fixed_row}");
        assert!(table.contains("* achieved under 95%"), "{table}");
        let plain_fixed = table
            .lines()
            .filter(|l| l.starts_with("plain"))
            .nth(1)
            .unwrap();
        assert!(!plain_fixed.contains('*'), "{plain_fixed}");
        assert_eq!(report.oha_args.fixed_rate.as_deref(), Some("oha -q 5000"));
    }

    #[test]
    fn numbers_format_with_sign_and_dash() {
        assert_eq!(num(Some(1.234), 2), "1.23");
        assert_eq!(num(None, 2), "-");
        assert_eq!(signed(Some(0.5), 1), "+0.5");
        assert_eq!(signed(Some(-2.0), 0), "-2");
    }
}
