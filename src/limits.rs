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

/// Page size of `GET /wallets/{userId}/transactions` (API.md).
pub const PAGE_LIMIT_DEFAULT: usize = 50;
pub const PAGE_LIMIT_MAX: usize = 200;
const _: () = assert!(PAGE_LIMIT_DEFAULT <= PAGE_LIMIT_MAX);

/// Commands waiting for the writer. Past this the service is saturated and
/// answers 503 at once rather than letting latency grow without bound. At a few
/// thousand commands a second this is well under a second of work.
pub const WRITE_QUEUE_DEPTH_MAX: usize = 1024;
/// Default of `--write-batch-max`: commands the writer applies in one
/// transaction (group commit). One fsync covers them all, while a batch still
/// finishes in a few milliseconds.
pub const WRITE_BATCH_MAX: usize = 128;
const _: () = assert!(WRITE_BATCH_MAX <= WRITE_QUEUE_DEPTH_MAX);
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
/// Entries `verify` holds in memory at once; it reads the ledger in batches.
pub const AUDIT_BATCH_ENTRIES: usize = 10_000;
/// Problems `verify` prints in full; it counts the rest.
pub const AUDIT_PROBLEMS_SHOWN_MAX: usize = 50;

/// HTTP worker threads: one per core of the 2-core machines we deploy on.
pub const HTTP_WORKERS: usize = 2;
/// Open connections per worker; more are not accepted until one closes.
pub const HTTP_CONNECTIONS_PER_WORKER_MAX: usize = 1024;
/// Pending connections in the kernel's accept queue.
pub const HTTP_BACKLOG: u32 = 1024;
/// Time a client has to send a request's head, so a slow client cannot hold a
/// connection open for ever.
pub const HTTP_CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a closing connection has to shut down cleanly.
pub const HTTP_CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// An idle keep-alive connection is closed after this.
pub const HTTP_KEEP_ALIVE: Duration = Duration::from_secs(30);
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
