//! Logging: `tracing` events (and the `log` records of the rest of the code,
//! bridged into them) filtered by `RUST_LOG`, written as text or JSON lines
//! (`WALLET_LOG_FORMAT`) to stderr.
//!
//! The lines are written by a thread of their own: a request only formats
//! its line and queues it, and the log thread writes what has queued in one
//! go. Writing each line to stderr from the worker that served the request
//! cost about a fifth of the service's read throughput. The queue is
//! bounded: past `LOG_LINES_QUEUED_MAX` a line is dropped, and counted,
//! rather than slowing the requests.

use std::io::BufWriter;

use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::limits::{LOG_BUFFER_BYTES, LOG_LINES_QUEUED_MAX};

/// Keeps the log thread; dropping it writes out every line queued.
pub struct LogGuard {
    _worker: WorkerGuard,
}

/// Lines dropped because the queue was full, since the start.
static DROPPED: std::sync::OnceLock<ErrorCounter> = std::sync::OnceLock::new();

pub fn dropped_lines() -> u64 {
    DROPPED
        .get()
        .map_or(0, |counter| counter.dropped_lines() as u64)
}

/// Installs the process's logger. `filter` is in `RUST_LOG`'s syntax; a part
/// of it that does not parse is ignored, as the filter's own parser does.
pub fn init(filter: &str, format: LogFormat) -> LogGuard {
    let stderr = BufWriter::with_capacity(LOG_BUFFER_BYTES, std::io::stderr());
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_QUEUED_MAX)
        .lossy(true)
        .thread_name("wallet-log")
        .finish(stderr);
    let _ = DROPPED.set(writer.error_counter());
    let filter = EnvFilter::builder().parse_lossy(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false);
    // Another logger already installed (a test harness) keeps its place.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    LogGuard { _worker: worker }
}
