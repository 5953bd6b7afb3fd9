//! The service's metrics, in Prometheus' text format (`GET /metrics`).
//!
//! Two kinds of figure. What the process observes as it runs (requests,
//! latencies, rejections, the writer's queue, batches and commits) lives in
//! one process-wide set of prometheus-client metrics, updated where it
//! happens with atomics and short locks. What the ledger holds (entries,
//! the WAL's size, each asset's outstanding and held totals) is read from
//! the database when scraped, so it is never a second copy that could drift.
//!
//! prometheus-client writes the OpenMetrics text format; API.md promises
//! Prometheus' own `text/plain; version=0.0.4`. The two differ only in a
//! counter's family name (`_total` is part of it in 0.0.4) and in the
//! OpenMetrics-only `# UNIT` and `# EOF` lines, so `exposition` renames and
//! drops those.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::limits::{EVENT_STREAMS_MAX, WRITE_QUEUE_DEPTH_MAX};

/// Seconds: from half a millisecond (a balance read) to five seconds (past
/// every timeout a request can meet).
const LATENCY_BUCKETS: [f64; 13] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Commands per write transaction, up to `WRITE_QUEUE_DEPTH_MAX`.
const BATCH_SIZE_BUCKETS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AssetLabels {
    asset: String,
}

type HistogramMaker = fn() -> Histogram;

/// The figures the process observes as it runs.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RequestLabels, Counter>,
    http_duration: Family<RouteLabels, Histogram, HistogramMaker>,
    rejections: Family<CodeLabels, Counter>,
    write_queue_depth: Gauge,
    write_batch_size: Histogram,
    commit_duration: Histogram,
    write_batches_failed: Counter,
    checkpoints: Counter,
    event_streams_open: Gauge,
}

/// The process's one set: the writer, the middleware and the error mapping
/// all report here.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            rejections: Family::default(),
            write_queue_depth: Gauge::default(),
            write_batch_size: Histogram::new(BATCH_SIZE_BUCKETS),
            commit_duration: latency_histogram(),
            write_batches_failed: Counter::default(),
            checkpoints: Counter::default(),
            event_streams_open: Gauge::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "wallet_http_requests",
            "HTTP requests answered, by route pattern, method and status",
            metrics.http_requests.clone(),
        );
        registry.register(
            "wallet_http_request_duration_seconds",
            "Time from a request's head to its answer, by route pattern",
            metrics.http_duration.clone(),
        );
        registry.register(
            "wallet_rejections",
            "Error answers, by API error code",
            metrics.rejections.clone(),
        );
        registry.register(
            "wallet_write_queue_depth",
            "Write commands queued for the writer",
            metrics.write_queue_depth.clone(),
        );
        registry.register(
            "wallet_write_queue_capacity",
            "Write commands the queue holds before writes are answered 503",
            ConstGauge::new(WRITE_QUEUE_DEPTH_MAX as i64),
        );
        registry.register(
            "wallet_write_batch_size",
            "Pieces of work committed together in one write transaction",
            metrics.write_batch_size.clone(),
        );
        registry.register(
            "wallet_commit_duration_seconds",
            "Time of one write transaction, BEGIN to COMMIT returned (the fsync included)",
            metrics.commit_duration.clone(),
        );
        registry.register(
            "wallet_write_batches_failed",
            "Write transactions rolled back by a storage failure",
            metrics.write_batches_failed.clone(),
        );
        registry.register(
            "wallet_checkpoints",
            "WAL checkpoints run by the writer",
            metrics.checkpoints.clone(),
        );
        registry.register(
            "wallet_event_streams_open",
            "Open Server-Sent Event streams of GET /events",
            metrics.event_streams_open.clone(),
        );
        registry.register(
            "wallet_event_streams_capacity",
            "Event streams open at once before more are answered 503",
            ConstGauge::new(EVENT_STREAMS_MAX as i64),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// One answered request. `route` is the pattern it matched, never its
    /// path: user ids must not become labels.
    pub fn observe_request(
        &self,
        route: &'static str,
        method: &actix_web::http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        self.http_requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
        self.http_duration
            .get_or_create(&RouteLabels { route })
            .observe(elapsed.as_secs_f64());
    }

    /// One error answer, by its code.
    pub fn count_rejection(&self, code: &'static str) {
        self.rejections.get_or_create(&CodeLabels { code }).inc();
    }

    pub fn command_queued(&self) {
        self.write_queue_depth.inc();
    }

    pub fn command_dequeued(&self) {
        self.write_queue_depth.dec();
    }

    /// One write transaction committed: its size and how long it took.
    pub fn batch_committed(&self, size: usize, elapsed: Duration) {
        self.write_batch_size.observe(size as f64);
        self.commit_duration.observe(elapsed.as_secs_f64());
    }

    pub fn batch_failed(&self) {
        self.write_batches_failed.inc();
    }

    pub fn checkpoint_run(&self) {
        self.checkpoints.inc();
    }

    pub fn event_stream_opened(&self) {
        self.event_streams_open.inc();
    }

    pub fn event_stream_closed(&self) {
        self.event_streams_open.dec();
    }
}

/// HTTP methods as a closed set of labels: an invented method cannot grow
/// the number of series.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// What the ledger holds, read from the database at a scrape.
#[derive(Debug, Clone, Default)]
pub struct LedgerFigures {
    pub entries: u64,
    pub wal_bytes: u64,
    /// Per asset, by symbol: what users hold, and what holds set aside.
    pub assets: Vec<AssetFigures>,
}

#[derive(Debug, Clone)]
pub struct AssetFigures {
    pub symbol: String,
    pub outstanding: i64,
    pub held: i64,
}

/// The whole exposition: the process's metrics, then the ledger's figures.
pub fn exposition(ledger: &LedgerFigures) -> String {
    let mut scraped = Registry::default();
    scraped.register(
        "wallet_entries",
        "Ledger entries in the database",
        ConstCounter::new(ledger.entries),
    );
    scraped.register(
        "wallet_wal_bytes",
        "Size of the SQLite write-ahead log",
        ConstGauge::new(i64::try_from(ledger.wal_bytes).unwrap_or(i64::MAX)),
    );
    scraped.register(
        "wallet_log_lines_dropped",
        "Log lines dropped because the log thread's queue was full",
        ConstCounter::new(crate::logging::dropped_lines()),
    );
    let outstanding = Family::<AssetLabels, Gauge>::default();
    let held = Family::<AssetLabels, Gauge>::default();
    for asset in &ledger.assets {
        let labels = AssetLabels {
            asset: asset.symbol.clone(),
        };
        outstanding.get_or_create(&labels).set(asset.outstanding);
        held.get_or_create(&labels).set(asset.held);
    }
    scraped.register(
        "wallet_asset_outstanding",
        "What users hold of an asset (the negative of its Treasury's balance), in its smallest unit",
        outstanding,
    );
    scraped.register(
        "wallet_asset_held",
        "What active holds set aside of an asset, in its smallest unit",
        held,
    );
    let mut open_metrics = String::new();
    // Writing into a String cannot fail.
    let _ = encode_registry(&mut open_metrics, &metrics().registry);
    let _ = encode_registry(&mut open_metrics, &scraped);
    as_prometheus_text(&open_metrics)
}

/// OpenMetrics text to Prometheus text 0.0.4: a counter's `# HELP` and
/// `# TYPE` name its samples' name (with `_total`), and the OpenMetrics-only
/// `# UNIT` and `# EOF` lines go.
fn as_prometheus_text(open_metrics: &str) -> String {
    let lines: Vec<&str> = open_metrics.lines().collect();
    let mut text = String::with_capacity(open_metrics.len() + 256);
    let mut counter_family: Option<&str> = None;
    for (index, line) in lines.iter().enumerate() {
        if line.starts_with("# UNIT ") || *line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            let next_is_counter = lines
                .get(index + 1)
                .is_some_and(|next| *next == format!("# TYPE {name} counter"));
            counter_family = next_is_counter.then_some(name);
            if next_is_counter {
                text.push_str(&format!("# HELP {name}_total{}\n", &rest[name.len()..]));
                continue;
            }
        } else if let Some(name) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.strip_suffix(" counter"))
        {
            if counter_family == Some(name) {
                text.push_str(&format!("# TYPE {name}_total counter\n"));
                continue;
            }
        }
        text.push_str(line);
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_their_total_and_openmetrics_lines_go() {
        let open_metrics = "# HELP wallet_things Things seen.\n\
                            # TYPE wallet_things counter\n\
                            wallet_things_total{kind=\"a\"} 3\n\
                            # HELP wallet_depth Depth.\n\
                            # TYPE wallet_depth gauge\n\
                            # UNIT wallet_depth bytes\n\
                            wallet_depth 7\n\
                            # EOF\n";
        assert_eq!(
            as_prometheus_text(open_metrics),
            "# HELP wallet_things_total Things seen.\n\
             # TYPE wallet_things_total counter\n\
             wallet_things_total{kind=\"a\"} 3\n\
             # HELP wallet_depth Depth.\n\
             # TYPE wallet_depth gauge\n\
             wallet_depth 7\n"
        );
    }

    #[test]
    fn the_exposition_names_every_family_api_md_lists() {
        let figures = LedgerFigures {
            entries: 12,
            wal_bytes: 4096,
            assets: vec![AssetFigures {
                symbol: "GOLD".into(),
                outstanding: 1500,
                held: 30,
            }],
        };
        metrics().observe_request(
            "/wallets/{userId}/spend",
            &actix_web::http::Method::POST,
            201,
            Duration::from_millis(2),
        );
        metrics().count_rejection("INSUFFICIENT_FUNDS");
        let text = exposition(&figures);
        for family in [
            "# TYPE wallet_http_requests_total counter",
            "# TYPE wallet_http_request_duration_seconds histogram",
            "# TYPE wallet_write_queue_depth gauge",
            "# TYPE wallet_write_batch_size histogram",
            "# TYPE wallet_commit_duration_seconds histogram",
            "# TYPE wallet_rejections_total counter",
            "# TYPE wallet_entries_total counter",
            "# TYPE wallet_wal_bytes gauge",
            "wallet_entries_total 12",
            "wallet_wal_bytes 4096",
            "wallet_asset_outstanding{asset=\"GOLD\"} 1500",
            "wallet_asset_held{asset=\"GOLD\"} 30",
            "wallet_rejections_total{code=\"INSUFFICIENT_FUNDS\"}",
        ] {
            assert!(text.contains(family), "{family} is not in:\n{text}");
        }
        assert!(!text.contains("# EOF"), "{text}");
    }
}
