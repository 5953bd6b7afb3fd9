//! Every bound in the service, each with its reason. API.md states the ones
//! callers can see; when one changes here it changes there in the same commit.

use std::time::Duration;

/// Largest amount one request may move: 2^53 - 1, so JavaScript clients, whose
/// numbers are doubles, never lose precision (API.md, Conventions).
pub const AMOUNT_MAX: u64 = 9_007_199_254_740_991;

/// A request body larger than this is refused with 413 before it is parsed
/// (API.md). A valid body fits even at its most verbose: a 1024-character
/// note and a 255-character reference written wholly as escaped surrogate
/// pairs (12 bytes a character) and a 255-character key of escaped quotes
/// (2 bytes each) come to about 15.9 KiB with the other fields.
pub const BODY_BYTES_MAX: usize = 16 * 1024;
/// `POST /batch` (API.md): room for 100 operations with their notes.
pub const BATCH_BODY_BYTES_MAX: usize = 64 * 1024;
/// Operations in one batch (API.md): one transaction, one key.
pub const BATCH_OPERATIONS_MAX: usize = 100;
/// Asset types in one ledger (API.md): the catalogue is read whole by
/// every balance request, so it must stay small.
pub const ASSET_TYPES_MAX: usize = 1000;

/// API.md: at most 1000 active holds on one account (one user, one asset);
/// the schema's CHECK on `account_holds.active` says the same.
pub const HOLDS_PER_ACCOUNT_MAX: i64 = 1000;
/// API.md: a hold lasts 1 second to 7 days, 15 minutes unless told.
pub const HOLD_EXPIRES_IN_SECONDS_MAX: u32 = 604_800;
pub const HOLD_EXPIRES_IN_SECONDS_DEFAULT: u32 = 900;
/// API.md, Limits: at most 8 caps per asset or per user override, each
/// over a window of 60 seconds to 30 days.
pub const LIMITS_PER_RULE_SET_MAX: usize = 8;
pub const LIMIT_WINDOW_SECONDS: (u32, u32) = (60, 2_592_000);
/// How often the writer records the expiry of holds that fell due, and how
/// many at most in one transaction: a hold counts nowhere from its expiry
/// on whether recorded or not, so this only bounds how stale the stored
/// status may be (well inside API.md's 5 s for `hold.expired`).
pub const HOLD_EXPIRY_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
pub const HOLD_EXPIRY_SWEEP_MAX: usize = 256;
/// An asset's name (API.md).
pub const ASSET_NAME_CHARS_MAX: usize = 128;
/// An asset's display decimals (API.md).
pub const ASSET_DECIMALS_MAX: u8 = 18;
/// `metadata` (API.md): keys, key length, value length, compact size.
pub const METADATA_KEYS_MAX: usize = 16;
pub const METADATA_KEY_CHARS_MAX: usize = 64;
pub const METADATA_VALUE_CHARS_MAX: usize = 256;
pub const METADATA_BYTES_MAX: usize = 2048;

/// `userId`: 1-128 characters of `A-Z a-z 0-9 _ . : @ -` (API.md).
pub const USER_ID_CHARS_MAX: usize = 128;
/// Idempotency keys: 1-255 visible ASCII characters (API.md).
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;
/// `referenceId`: at most 255 characters (API.md).
pub const REFERENCE_ID_CHARS_MAX: usize = 255;
/// `note`: at most 1024 characters (API.md).
pub const NOTE_CHARS_MAX: usize = 1024;
/// An asset symbol: short upper-case names such as `GOLD`; the bound keeps a
/// hostile query string from being carried into SQL at any length.
pub const ASSET_SYMBOL_CHARS_MAX: usize = 32;
/// A caller's `X-Request-Id`: 1-128 visible ASCII characters (API.md); past it
/// a fresh id is used instead.
pub const REQUEST_ID_CHARS_MAX: usize = 128;
/// A cursor is one entry's sequence number in decimal: i64::MAX has 19 digits.
pub const CURSOR_CHARS_MAX: usize = 19;

/// Problems one query string is reported for; past it the rest are not
/// looked at, so a hostile 64 KiB query costs little and echoes little.
pub const QUERY_PROBLEMS_MAX: usize = 20;

/// Page size of `GET /wallets/{userId}/transactions` (API.md).
pub const PAGE_LIMIT_DEFAULT: usize = 50;
pub const PAGE_LIMIT_MAX: usize = 200;
const _: () = assert!(PAGE_LIMIT_DEFAULT <= PAGE_LIMIT_MAX);

/// Postings one account's scan examines for a filtered history page before
/// it stops and hands back a cursor: a page costs a few milliseconds however
/// rare the matching entries are (a full scan of a 1M-entry history took
/// 0.25 s, on one of two HTTP workers).
pub const HISTORY_ROWS_EXAMINED_MAX: usize = 2_000;
const _: () = assert!(PAGE_LIMIT_MAX < HISTORY_ROWS_EXAMINED_MAX);
/// Longest a read may run before SQLite interrupts it (a progress handler):
/// a bounded read takes milliseconds; one that does not is stopped and
/// answered 503 rather than holding a read connection.
pub const READ_TIME_MAX: Duration = Duration::from_secs(2);
/// Read-only connections for reads that run off the HTTP workers (history
/// pages), so that a slow one never stalls health checks and writes.
pub const READ_POOL_OFF_WORKER_SIZE: u32 = 2;
/// Writer threads of one PostgreSQL instance, each on a connection of its
/// own: a write there waits on round trips to the server, not on a file
/// lock, so lanes side by side multiply what one instance writes (SQLite
/// keeps one writer).
pub const PG_WRITER_LANES: usize = 4;

/// Commands waiting for the writer. Past this the service is saturated and
/// answers 503 at once rather than letting latency grow without bound. At a few
/// thousand commands a second this is well under a second of work.
pub const WRITE_QUEUE_DEPTH_MAX: usize = 1024;
/// Default of `--write-batch-max`: commands the writer applies in one
/// transaction (group commit). One fsync covers them all, while a batch still
/// finishes in a few milliseconds.
pub const WRITE_BATCH_MAX: usize = 128;
const _: () = assert!(WRITE_BATCH_MAX <= WRITE_QUEUE_DEPTH_MAX);
/// 1 ..= the queue depth: a batch can never hold more than is queued.
pub fn parse_write_batch_max(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(n) if (1..=WRITE_QUEUE_DEPTH_MAX).contains(&n) => Ok(n),
        _ => Err(format!(
            "must be a whole number from 1 to {WRITE_QUEUE_DEPTH_MAX}, not {value:?}"
        )),
    }
}

/// `Retry-After` sent with 503, in seconds.
pub const RETRY_AFTER_SECONDS: u64 = 1;

/// How long a connection waits for a lock held by another process (a CLI
/// command on the same file, a backup) before the request fails with 503.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read-only connections: one per HTTP worker. Reads run on the workers
/// themselves, each holding one connection at a time and never across an
/// await, so more would sit idle (2, 4 and 8 measured alike).
pub const READ_POOL_SIZE: u32 = HTTP_WORKERS as u32;
/// How long a read waits for a free read connection before answering 503.
pub const READ_POOL_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(2);
/// Files up to this size get SQLite's whole `quick_check` at start-up
/// (about a second at most); larger ones the cheap length check.
pub const INTEGRITY_CHECK_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Entries `verify` holds in memory at once; it reads the ledger in batches.
pub const AUDIT_BATCH_ENTRIES: usize = 10_000;
/// Problems `verify` prints in full; it counts the rest.
pub const AUDIT_PROBLEMS_SHOWN_MAX: usize = 50;
/// Rows `wallet copy` holds in memory at once (accounts, entries and
/// changes of holds, balances): a few megabytes at most per batch.
pub const COPY_BATCH_ROWS: usize = 1_000;
/// Idempotency records `wallet copy` holds at once: one may carry 256 KiB
/// of request and 64 KiB of answer, so fewer than other rows.
pub const COPY_BATCH_REQUESTS: usize = 200;
/// Differences between a copy and its source `wallet copy` prints in full;
/// it counts the rest.
pub const COPY_MISMATCHES_SHOWN_MAX: usize = 20;

/// HTTP worker threads: one per core of the 2-core machines we deploy on.
pub const HTTP_WORKERS: usize = 2;
/// Open connections per worker; past it (or past the process's file
/// descriptors, whichever is lower) a new connection gets a canned 503 and is
/// closed. An idle connection costs a few KiB, so 16,384 in all fit a small
/// machine's memory, and an attacker needs far more than one address to fill
/// them (`HTTP_CONNECTIONS_PER_ADDRESS_MAX`).
pub const HTTP_CONNECTIONS_PER_WORKER_MAX: usize = 8192;
/// Connections one client address (an IPv4 address, an IPv6 /64) may hold at
/// once: twice what `wallet bench` drives at most from one machine, and an
/// eighth of the slots, so one address cannot lock others out.
pub const HTTP_CONNECTIONS_PER_ADDRESS_MAX: u32 = 2048;
/// How long a refused connection is kept open for its client to read the
/// 503, and how many may wait so at once (file descriptors beyond the
/// slots): past the number, refused connections are closed at once.
pub const HTTP_REFUSED_LINGER: Duration = Duration::from_millis(500);
pub const HTTP_REFUSED_LINGERING_MAX: usize = 1024;
/// File descriptors kept back from connections for the database, its WAL,
/// the lock file, logs and refused connections lingering.
pub const HTTP_FILE_DESCRIPTORS_RESERVED: usize = 1280;
const _: () = assert!(HTTP_REFUSED_LINGERING_MAX < HTTP_FILE_DESCRIPTORS_RESERVED);
/// Pending connections in the kernel's accept queue.
pub const HTTP_BACKLOG: u32 = 1024;
/// Time a client has to send a request's head, so a slow client cannot hold a
/// connection open for ever. actix-http times only a connection's first
/// head; the accept layer (`http/connection.rs`) times every later one too.
pub const HTTP_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to send a whole request, head and body, from its first
/// byte: past it a 408, the connection closed, and nothing written. A body
/// is at most 64 KiB, seconds of upload even on a poor mobile link; a client
/// that trickles it can no longer park a write for ever (or past a key's
/// revocation).
pub const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const _: () = assert!(HTTP_CLIENT_REQUEST_TIMEOUT.as_millis() < HTTP_REQUEST_TIMEOUT.as_millis());
/// Answers a connection may leave unread (held by the dispatcher while the
/// socket takes no more) before it is closed. Meanwhile the connection is not
/// read, so no new request is parsed. Well above any one answer of this API
/// (a history page of 200 verbose entries), far below what pipelining without
/// reading could otherwise pile up (18 MB a connection, measured).
pub const HTTP_UNSENT_BYTES_MAX: usize = 1024 * 1024;
/// Bytes handed to the HTTP/1.1 dispatcher in one read: a request head or
/// a body's worth at a time, so pipelined requests are parsed a few at a
/// time as they are answered, not thousands at once.
pub const HTTP_READ_CHUNK_BYTES: usize = 16 * 1024;
/// How long a connection may go without the client taking any of its
/// answers before it is closed.
pub const HTTP_WRITE_STALL_MAX: Duration = Duration::from_secs(10);
/// Time a closing connection has to shut down cleanly.
pub const HTTP_CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// An idle keep-alive connection is closed after this while at most half the
/// connection slots are taken; past that it shrinks with the free slots.
pub const HTTP_KEEP_ALIVE: Duration = Duration::from_secs(30);
/// The shortest keep-alive, when every slot is taken.
pub const HTTP_KEEP_ALIVE_MIN: Duration = Duration::from_secs(1);
/// On SIGTERM/SIGINT, requests in flight get this long to finish.
pub const HTTP_SHUTDOWN_TIMEOUT_SECONDS: u64 = 30;

/// `wallet bench`: keep-alive connections it drives at once.
pub const BENCH_CONNECTIONS_MAX: u16 = 1024;
/// `wallet bench`: users its load is spread over.
pub const BENCH_USERS_MAX: u32 = 1_000_000;
/// `wallet bench --entries`: enough to show cost at tens of millions.
pub const BENCH_ENTRIES_MAX: u64 = 100_000_000;
/// `wallet bench --duration`: the longest one scenario runs.
pub const BENCH_DURATION_MAX: Duration = Duration::from_secs(3600);
/// Largest request head (request line and headers) actix-http's parser
/// buffers; past it the request is refused with a bare 431 before the service
/// sees it (README, the one exception to the envelope). actix-web 4 offers no
/// setting for it (it is actix-http's `MAX_BUFFER_SIZE`), so the number is
/// stated here and a test holds the server to it.
pub const HTTP_HEAD_BYTES_MAX: usize = 128 * 1024;
/// Most header lines in one request, actix-http's `MAX_HEADERS`; past it the
/// request is refused with a bare 431, like an oversized head.
pub const HTTP_HEADERS_MAX: usize = 96;

/// An API key's name: short enough to read in a log line or a table.
pub const API_KEY_NAME_CHARS_MAX: usize = 64;
/// Random bytes in a key's secret: 192 bits from the operating system's
/// CSPRNG, well past the 128 that put guessing out of reach, and what lets a
/// plain SHA-256 stand in for a password hash.
pub const API_KEY_SECRET_BYTES: usize = 24;
/// Keys in use at once. A wallet has a handful of callers (game servers,
/// payment webhooks, back office); every active key lives in each server's
/// memory, so the bound keeps that small.
pub const API_KEYS_ACTIVE_MAX: usize = 100;
/// Keys ever created, revoked ones included (they are kept: the entries they
/// wrote name them). Bounds the table `wallet keys list` prints.
pub const API_KEYS_TOTAL_MAX: usize = 10_000;
/// How often a running server looks for new and revoked keys: one read of a
/// one-row counter, so a revocation by `wallet keys revoke` in another
/// process takes effect within this, with no per-request database cost.
pub const API_KEYS_RELOAD_INTERVAL: Duration = Duration::from_millis(100);
/// How often a key's last use is written: coarse on purpose, so use costs no
/// write per request; `wallet keys list` is at most this stale.
pub const API_KEY_LAST_USED_FLUSH_INTERVAL: Duration = Duration::from_secs(60);

/// Requests a second one API key may make, sustained (token bucket refill).
/// Well above what one game server or webhook sends, so it bites only a
/// runaway or abusive client, and below what the service does in all, so one
/// key cannot take all of it. `--rate-limit-per-second`.
pub const RATE_LIMIT_PER_SECOND_DEFAULT: u32 = 5_000;
/// Requests one API key may make in a burst above the sustained rate (token
/// bucket size): two seconds' worth. `--rate-limit-burst`.
pub const RATE_LIMIT_BURST_DEFAULT: u32 = 10_000;
/// The largest value either rate-limit setting accepts: beyond it the limit
/// would mean nothing on the machines we deploy on.
pub const RATE_LIMIT_SETTING_MAX: u32 = 1_000_000;
const _: () = assert!(RATE_LIMIT_PER_SECOND_DEFAULT <= RATE_LIMIT_BURST_DEFAULT);
const _: () = assert!(RATE_LIMIT_BURST_DEFAULT <= RATE_LIMIT_SETTING_MAX);
/// `wallet health` gives up on a server that takes longer than this to accept
/// or answer: a container health check must end, and a healthy server answers
/// in milliseconds.
pub const HEALTH_PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Bytes of the answer `wallet health` reads; the status line is at the start.
pub const HEALTH_PROBE_RESPONSE_BYTES_MAX: u64 = 64 * 1024;

/// `GET /events` (API.md): 100 events a page unless asked, at most 1000.
pub const EVENTS_PAGE_LIMIT_DEFAULT: usize = 100;
pub const EVENTS_PAGE_LIMIT_MAX: usize = 1000;
/// Server-Sent Event streams open at once (API.md); past it 503.
pub const EVENT_STREAMS_MAX: usize = 100;
/// Events a stream reads from the database at a time: one chunk of its
/// answer, so a stream never holds more than this in memory.
pub const EVENT_STREAM_READ_BATCH: usize = 256;
/// A comment line on an idle stream this often, so proxies and clients can
/// tell a quiet ledger from a dead connection.
pub const EVENT_STREAM_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Log lines waiting for the log thread. Past it new lines are dropped
/// (and counted) rather than slowing the requests that log them.
pub const LOG_LINES_QUEUED_MAX: usize = 16_384;
/// The log thread's buffer in front of stderr: it writes once it has drained
/// what is queued, or when this fills.
pub const LOG_BUFFER_BYTES: usize = 64 * 1024;
/// How long the log thread waits after writing out what had queued before
/// it looks again: the most a line is held back, and what keeps it from
/// waking once a line under load.
pub const LOG_THREAD_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
