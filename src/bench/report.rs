//! What a bench run measured, for a person (a table) or a script (`--json`).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

/// Latency percentiles of one scenario, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Latency {
    /// Exact percentiles (nearest rank) of every request's latency.
    pub fn of(samples: &mut [u32]) -> Latency {
        samples.sort_unstable();
        let rank = |fraction: f64| -> u64 {
            if samples.is_empty() {
                return 0;
            }
            let index = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len());
            u64::from(samples[index - 1])
        };
        Latency {
            p50_us: rank(0.50),
            p99_us: rank(0.99),
            p999_us: rank(0.999),
            max_us: samples.last().copied().map_or(0, u64::from),
        }
    }
}

/// One scenario's figures.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    pub write_batch_max: Option<usize>,
    pub ledger_entries_before: Option<u64>,
    /// The rules on value the run's GOLD had (`--rules`).
    pub rules: Option<String>,
    pub connections: usize,
    pub seconds: f64,
    pub requests: u64,
    pub requests_per_second: f64,
    pub latency: Latency,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Requests that got no HTTP answer (a connection error).
    pub transport_errors: u64,
}

/// A start-up of the binary on an existing database, to a healthy `/health`.
#[derive(Debug, Clone, Serialize)]
pub struct Startup {
    pub runs: usize,
    pub median_ms: f64,
    pub max_ms: f64,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub target: String,
    /// Whether the entry count and the verify audit ran: only when the
    /// server's file is here (in-process), never for `--url`.
    pub audited: bool,
    pub scenarios: Vec<ScenarioResult>,
    /// The bench process's peak resident set (it holds the server when the
    /// server runs in-process), in KiB; None when the server is elsewhere.
    pub peak_rss_kib: Option<u64>,
    pub startup: Option<Startup>,
    /// Every check that failed; empty when the run is clean.
    pub failures: Vec<String>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.failures.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "target: {}", self.target)?;
        writeln!(
            f,
            "{:<8} {:>6} {:>10} {:>6} {:>10} {:>10} {:>9} {:>9} {:>9}  statuses",
            "scenario",
            "batch",
            "entries",
            "conns",
            "requests",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99.9 ms"
        )?;
        for result in &self.scenarios {
            let statuses: Vec<String> = result
                .statuses
                .iter()
                .map(|(status, count)| format!("{status}x{count}"))
                .chain(
                    (result.transport_errors > 0)
                        .then(|| format!("transport-errors x{}", result.transport_errors)),
                )
                .collect();
            writeln!(
                f,
                "{:<8} {:>6} {:>10} {:>6} {:>10} {:>10.0} {:>9.2} {:>9.2} {:>9.2}  {}",
                match result.rules.as_deref() {
                    Some(rules) if rules != "none" => format!("{}+{rules}", result.scenario),
                    _ => result.scenario.clone(),
                },
                result
                    .write_batch_max
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                result
                    .ledger_entries_before
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                result.connections,
                result.requests,
                result.requests_per_second,
                millis(result.latency.p50_us),
                millis(result.latency.p99_us),
                millis(result.latency.p999_us),
                statuses.join(" ")
            )?;
        }
        match self.peak_rss_kib {
            Some(kib) => writeln!(
                f,
                "peak RSS (server and load generator together): {:.1} MiB",
                kib as f64 / 1024.0
            )?,
            None => writeln!(
                f,
                "peak RSS: not measured (the server is not in this process)"
            )?,
        }
        if let Some(startup) = &self.startup {
            writeln!(
                f,
                "start-up to a healthy /health on an existing database: median {:.1} ms, max {:.1} ms over {} runs",
                startup.median_ms, startup.max_ms, startup.runs
            )?;
        }
        if self.failures.is_empty() && self.audited {
            write!(
                f,
                "checks: every balance, entry count and the verify audit agree"
            )
        } else if self.failures.is_empty() {
            write!(
                f,
                "checks: every balance agrees with the answers; the entry count and the verify audit were not run (the server's file is not here: run `wallet verify` on it)"
            )
        } else {
            writeln!(f, "CHECKS FAILED:")?;
            for failure in &self.failures {
                writeln!(f, "  - {failure}")?;
            }
            Ok(())
        }
    }
}

fn millis(micros: u64) -> f64 {
    micros as f64 / 1000.0
}

pub fn seconds(duration: Duration) -> f64 {
    duration.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u32> = (1..=1000).rev().collect();
        let latency = Latency::of(&mut samples);
        assert_eq!(latency.p50_us, 500);
        assert_eq!(latency.p99_us, 990);
        assert_eq!(latency.p999_us, 999);
        assert_eq!(latency.max_us, 1000);
        assert_eq!(Latency::of(&mut []).p99_us, 0);
        assert_eq!(Latency::of(&mut [7]).p50_us, 7);
    }
}
