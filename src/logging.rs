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
//!
//! The access log, a line for every request, skips `tracing`'s formatter:
//! its field visitors and `dyn` formatting took about 12,000 instructions a
//! line, an eighth of a balance read. `access` writes the same line, in the
//! same text or JSON shape, straight into a buffer the thread keeps, with
//! the timestamp's date and time formatted once a second. `RUST_LOG` still
//! decides whether it is written (target `wallet::access`).

use std::cell::RefCell;
use std::io::{BufWriter, Write};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::limits::{LOG_BUFFER_BYTES, LOG_LINES_QUEUED_MAX, LOG_THREAD_PAUSE};

/// How log lines are written (`WALLET_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One readable line per event, for a terminal.
    Text,
    /// One JSON object per line, for a log shipper.
    Json,
}

/// The target of the access log's line per request.
pub const ACCESS_LOG_TARGET: &str = "wallet::access";

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
    let stderr = PacedWriter {
        inner: BufWriter::with_capacity(LOG_BUFFER_BYTES, std::io::stderr()),
        pause: LOG_THREAD_PAUSE,
    };
    let (writer, worker) = NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_LINES_QUEUED_MAX)
        .lossy(true)
        .thread_name("wallet-log")
        .finish(stderr);
    let _ = DROPPED.set(writer.error_counter());
    let filter = EnvFilter::builder().parse_lossy(filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone())
        .with_ansi(false);
    // Another logger already installed (a test harness) keeps its place.
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if installed.is_ok() {
        let _ = ACCESS_LOG.set(AccessLog { writer, format });
    }
    LogGuard { _worker: worker }
}

/// The log thread's writer. After writing out what had queued it waits a
/// moment before looking again, so that under load it wakes (and writes)
/// about a hundred times a second rather than once a line; each wake-up
/// costs the request that queued the line a system call. A line waits at
/// most `pause` longer; the bounded queue holds what comes meanwhile.
struct PacedWriter<W> {
    inner: W,
    pause: Duration,
}

impl<W: Write> Write for PacedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(buf)
    }

    /// Called when the queue is empty.
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()?;
        std::thread::sleep(self.pause);
        Ok(())
    }
}

/// Where access lines go, once the logger is installed.
struct AccessLog {
    writer: NonBlocking,
    format: LogFormat,
}

static ACCESS_LOG: OnceLock<AccessLog> = OnceLock::new();

/// One request, as its access-log line tells it.
pub struct AccessLine<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The route's pattern, or `unmatched`.
    pub route: &'a str,
    pub status: u16,
    pub latency: Duration,
    /// The caller's key's name; `None` for an unkeyed caller.
    pub key: Option<&'a str>,
}

/// Whether `RUST_LOG` lets access lines through (and a logger takes them).
pub fn access_enabled() -> bool {
    ACCESS_LOG.get().is_some() && tracing::enabled!(target: ACCESS_LOG_TARGET, tracing::Level::INFO)
}

/// What a thread keeps between its access lines: the line's buffer and the
/// formatted whole second of the last one.
struct LineBuffer {
    bytes: Vec<u8>,
    second: i64,
    second_text: String,
}

thread_local! {
    static LINE_BUFFER: RefCell<LineBuffer> = const {
        RefCell::new(LineBuffer { bytes: Vec::new(), second: i64::MIN, second_text: String::new() })
    };
}

/// Queues `line` for the log thread, as text or JSON. The caller checks
/// `access_enabled` first.
pub fn access(line: &AccessLine) {
    let Some(log) = ACCESS_LOG.get() else {
        return;
    };
    LINE_BUFFER.with(|cell| {
        let mut buffer = cell.borrow_mut();
        let buffer = &mut *buffer;
        buffer.bytes.clear();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let second = now.as_secs() as i64;
        if second != buffer.second {
            buffer.second = second;
            buffer.second_text = format_second(second);
        }
        let timestamp = Timestamp {
            second: &buffer.second_text,
            micros: now.subsec_micros(),
        };
        match log.format {
            LogFormat::Text => text_line(&mut buffer.bytes, &timestamp, line),
            LogFormat::Json => json_line(&mut buffer.bytes, &timestamp, line),
        }
        // The writer only queues: it never fails, and a full queue counts the
        // line as dropped.
        let _ = log.writer.clone().write_all(&buffer.bytes);
    });
}

/// `2026-12-05T12:59:25`, as `tracing`'s lines begin.
fn format_second(second: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    time::OffsetDateTime::from_unix_timestamp(second)
        .ok()
        .and_then(|time| time.format(&format).ok())
        .unwrap_or_else(|| "0000-00-00T00:00:00".to_owned())
}

struct Timestamp<'a> {
    second: &'a str,
    micros: u32,
}

impl Timestamp<'_> {
    /// `2026-12-05T12:59:25.735602Z`
    fn write_to(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.second.as_bytes());
        out.push(b'.');
        push_zero_padded(out, self.micros, 6);
        out.push(b'Z');
    }
}

/// A string as a JSON string: quoted, with `"`, `\\` and control characters
/// escaped. The text lines quote their values the same way, so no value
/// (a path is the caller's) can forge a field or a line.
fn push_quoted(out: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(&mut *out, value);
}

fn push_number(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// `value` in at least `width` digits, zeros in front.
fn push_zero_padded(out: &mut Vec<u8>, value: u32, width: usize) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(value).as_bytes();
    out.extend(std::iter::repeat_n(
        b'0',
        width.saturating_sub(digits.len()),
    ));
    out.extend_from_slice(digits);
}

/// Milliseconds with three decimals: `12.034`.
fn push_latency_ms(out: &mut Vec<u8>, latency: Duration) {
    let micros = latency.as_micros().min(u128::from(u64::MAX)) as u64;
    push_number(out, micros / 1000);
    out.push(b'.');
    push_zero_padded(out, (micros % 1000) as u32, 3);
}

/// `<time>  INFO wallet::access: GET /path 200 request_id="..." method="GET"
/// path="/path" route="/pattern" status=200 latency_ms=1.234 key="-"`, the
/// shape of the service's other text lines.
fn text_line(out: &mut Vec<u8>, timestamp: &Timestamp, line: &AccessLine) {
    timestamp.write_to(out);
    out.extend_from_slice(b"  INFO ");
    out.extend_from_slice(ACCESS_LOG_TARGET.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(line.method.as_bytes());
    out.push(b' ');
    push_quoted_if_needed(out, line.path);
    out.push(b' ');
    push_number(out, line.status);
    out.extend_from_slice(b" request_id=");
    push_quoted(out, line.request_id);
    out.extend_from_slice(b" method=");
    push_quoted(out, line.method);
    out.extend_from_slice(b" path=");
    push_quoted(out, line.path);
    out.extend_from_slice(b" route=");
    push_quoted(out, line.route);
    out.extend_from_slice(b" status=");
    push_number(out, line.status);
    out.extend_from_slice(b" latency_ms=");
    push_latency_ms(out, line.latency);
    out.extend_from_slice(b" key=");
    push_quoted(out, line.key.unwrap_or("-"));
    out.push(b'\n');
}

/// The message's path as it came when it is plain visible ASCII (a path
/// the HTTP parser let through always is), quoted otherwise.
fn push_quoted_if_needed(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|byte| byte.is_ascii_graphic() && byte != b'"' && byte != b'\\')
    {
        out.extend_from_slice(value.as_bytes());
    } else {
        push_quoted(out, value);
    }
}

/// One JSON object, in the order and with the names of the service's other
/// JSON lines (`tracing`'s, flattened).
fn json_line(out: &mut Vec<u8>, timestamp: &Timestamp, line: &AccessLine) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp.write_to(out);
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
    let mut message = String::with_capacity(line.method.len() + line.path.len() + 8);
    message.push_str(line.method);
    message.push(' ');
    message.push_str(line.path);
    message.push(' ');
    message.push_str(itoa::Buffer::new().format(line.status));
    push_quoted(out, &message);
    out.extend_from_slice(b",\"request_id\":");
    push_quoted(out, line.request_id);
    out.extend_from_slice(b",\"method\":");
    push_quoted(out, line.method);
    out.extend_from_slice(b",\"path\":");
    push_quoted(out, line.path);
    out.extend_from_slice(b",\"route\":");
    push_quoted(out, line.route);
    out.extend_from_slice(b",\"status\":");
    push_number(out, line.status);
    out.extend_from_slice(b",\"latency_ms\":");
    push_latency_ms(out, line.latency);
    out.extend_from_slice(b",\"key\":");
    push_quoted(out, line.key.unwrap_or("-"));
    out.extend_from_slice(b",\"target\":");
    push_quoted(out, ACCESS_LOG_TARGET);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(path: &'a str, key: Option<&'a str>) -> AccessLine<'a> {
        AccessLine {
            request_id: "req-1",
            method: "POST",
            path,
            route: "/wallets/{userId}/spend",
            status: 201,
            latency: Duration::from_micros(12_034),
            key,
        }
    }

    const AT: Timestamp<'static> = Timestamp {
        second: "2026-12-05T12:59:25",
        micros: 42,
    };

    #[test]
    fn a_text_line_has_the_shape_of_the_other_text_lines() {
        let mut out = Vec::new();
        text_line(
            &mut out,
            &AT,
            &line("/wallets/u1/spend", Some("game-server")),
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "2026-12-05T12:59:25.000042Z  INFO wallet::access: POST /wallets/u1/spend 201 \
             request_id=\"req-1\" method=\"POST\" path=\"/wallets/u1/spend\" \
             route=\"/wallets/{userId}/spend\" status=201 latency_ms=12.034 key=\"game-server\"\n"
        );
    }

    #[test]
    fn a_json_line_is_one_object_with_every_field() {
        let mut out = Vec::new();
        json_line(&mut out, &AT, &line("/wallets/u1/spend", None));
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            record,
            serde_json::json!({
                "timestamp": "2026-12-05T12:59:25.000042Z", "level": "INFO",
                "message": "POST /wallets/u1/spend 201", "request_id": "req-1",
                "method": "POST", "path": "/wallets/u1/spend",
                "route": "/wallets/{userId}/spend", "status": 201, "latency_ms": 12.034,
                "key": "-", "target": "wallet::access"
            })
        );
    }

    /// A value with quotes, a newline or a backslash cannot end a field or
    /// start a line of its own.
    #[test]
    fn a_hostile_value_stays_inside_its_field() {
        let hostile = "/x\" status=500\n2026-01-01T00:00:00Z  INFO forged\\";
        let mut text = Vec::new();
        text_line(&mut text, &AT, &line(hostile, Some(hostile)));
        let text = String::from_utf8(text).unwrap();
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert_eq!(unquoted(&text).matches(" status=").count(), 1, "{text}");

        let mut json = Vec::new();
        json_line(&mut json, &AT, &line(hostile, Some(hostile)));
        let record: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(record["path"], hostile);
        assert_eq!(record["key"], hostile);
        assert_eq!(record["status"], 201);
    }

    /// The line with every quoted value taken out, as a log parser splits it.
    fn unquoted(text: &str) -> String {
        let mut outside = String::new();
        let (mut quoted, mut escaped) = (false, false);
        for character in text.chars() {
            match (quoted, escaped, character) {
                (true, true, _) => escaped = false,
                (true, false, '\\') => escaped = true,
                (_, _, '"') => quoted = !quoted,
                (false, _, _) => outside.push(character),
                (true, false, _) => {}
            }
        }
        outside
    }

    #[test]
    fn latency_and_time_keep_their_digits() {
        for (micros, text) in [
            (0, "0.000"),
            (7, "0.007"),
            (1_000, "1.000"),
            (123_456_789, "123456.789"),
        ] {
            let mut out = Vec::new();
            push_latency_ms(&mut out, Duration::from_micros(micros));
            assert_eq!(String::from_utf8(out).unwrap(), text);
        }
        assert_eq!(format_second(0), "1970-01-01T00:00:00");
        assert_eq!(format_second(1_796_475_565), "2026-12-05T12:59:25");
    }
}
