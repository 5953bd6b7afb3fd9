//! Goal: with more writers at once than the write queue holds, the service
//! answers the surplus `503 SERVICE_OVERLOADED` with `Retry-After` at once,
//! while the queue is still stuck, and goes on serving reads and health; every
//! write it acknowledged is on disk, and once the load drops the refused ones
//! succeed when retried with their keys.
//!
//! To fill the queue reliably over HTTP, another connection holds SQLite's
//! write lock, so the writer waits in `BEGIN IMMEDIATE` and drains nothing.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::crash::assert_verify_passes;
use crate::helpers::{TestApp, SEED_ENTRIES};
use crate::hostile::{host, json_post, parse_response, RawResponse};
use wallet::limits::{WRITE_BATCH_MAX, WRITE_QUEUE_DEPTH_MAX};

/// More than the queue and one batch the writer may already hold can take.
const WRITERS: usize = WRITE_QUEUE_DEPTH_MAX + WRITE_BATCH_MAX + 300;
/// The queue holds this many at most; everyone else must be refused.
const HELD_MAX: usize = WRITE_QUEUE_DEPTH_MAX + WRITE_BATCH_MAX;

/// One client's connection with its request sent and its answer so far.
struct Pending {
    key: String,
    stream: TcpStream,
    answer: Vec<u8>,
}

impl Pending {
    /// Reads what has arrived; the whole response once the server closed.
    fn poll(&mut self) -> Option<RawResponse> {
        let mut buffer = [0_u8; 4096];
        loop {
            match self.stream.read(&mut buffer) {
                Ok(0) => return Some(parse_response(&self.answer)),
                Ok(read) => self.answer.extend_from_slice(&buffer[..read]),
                Err(error) if error.kind() == ErrorKind::WouldBlock => return None,
                Err(error) => panic!("{}: {error}", self.key),
            }
        }
    }
}

fn is_code(response: &RawResponse, code: &str) -> bool {
    response
        .reply()
        .body
        .is_some_and(|body| body["error"]["code"] == code)
}

#[test]
fn more_writers_than_the_queue_holds_are_refused_at_once_and_nothing_acknowledged_is_lost() {
    if !crate::helpers::sqlite_only(
        "SQLite's write lock held by another process to stall the writer",
    ) {
        return;
    }
    let app = TestApp::spawn();
    let blocker = rusqlite::Connection::open(&app.db_path).unwrap();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();

    let mut pending: Vec<Pending> = (0..WRITERS)
        .map(|i| {
            let key = format!("overload-{i}");
            let body = json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key});
            let mut stream = TcpStream::connect(host(&app)).unwrap();
            stream
                .write_all(&json_post(
                    b"/wallets/user_alice/topup",
                    body.to_string().as_bytes(),
                ))
                .unwrap();
            stream.set_nonblocking(true).unwrap();
            Pending {
                key,
                stream,
                answer: Vec::new(),
            }
        })
        .collect();

    // While the writer is stuck, the surplus is answered.
    // Each client is refused as overloaded, waits in the queue or in the
    // writer's batch (HELD_MAX together), or was in a batch that timed out
    // on the lock and was rolled back, which frees a place for one more.
    // So at least WRITERS - HELD_MAX are answered while the lock is held,
    // and all but the rolled-back ones as overloaded.
    let mut answered: BTreeMap<String, RawResponse> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered.len() < WRITERS - HELD_MAX {
        assert!(
            Instant::now() < deadline,
            "only {} answered while the queue was full",
            answered.len()
        );
        pending.retain_mut(|client| match client.poll() {
            Some(response) => {
                answered.insert(client.key.clone(), response);
                false
            }
            None => true,
        });
        std::thread::sleep(Duration::from_millis(5));
    }
    let count = |code: &str| answered.values().filter(|r| is_code(r, code)).count();
    let (overloaded, rolled_back) = (count("SERVICE_OVERLOADED"), count("DATABASE_UNAVAILABLE"));
    assert_eq!(overloaded + rolled_back, answered.len());
    assert!(overloaded + rolled_back >= WRITERS - HELD_MAX);
    assert!(overloaded > 0);
    for response in answered
        .values()
        .filter(|r| is_code(r, "SERVICE_OVERLOADED"))
    {
        assert_eq!(response.status, 503);
        assert!(response.reply().envelope_problem().is_none());
        assert!(
            response
                .head
                .to_ascii_lowercase()
                .contains("retry-after: 1"),
            "{}",
            response.head
        );
    }
    // Reads and health are answered beside the full queue. Once a batch has
    // waited out the lock's 5 s and rolled back, writes are failing, and
    // health says so (503); on a loaded machine that can come first.
    let health = app.get("/health");
    assert!(
        health.status == 200
            || (health.status == 503 && health.error_code() == "DATABASE_UNAVAILABLE"),
        "{:?}",
        health.body
    );
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);

    // The load drops: everything still queued is applied and answered.
    blocker.execute_batch("ROLLBACK").unwrap();
    drop(blocker);
    for mut client in pending {
        client.stream.set_nonblocking(false).unwrap();
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let response = (0..3)
            .find_map(|_| client.poll())
            .unwrap_or_else(|| panic!("{} was never answered", client.key));
        answered.insert(client.key, response);
    }
    let mut acknowledged = 0;
    for (key, response) in &answered {
        assert!(
            response.reply().envelope_problem().is_none(),
            "{key}: {response:?}"
        );
        match response.status {
            201 => acknowledged += 1,
            // Queued behind the lock past the busy timeout: rolled back.
            503 => assert!(
                is_code(response, "SERVICE_OVERLOADED")
                    || is_code(response, "DATABASE_UNAVAILABLE")
            ),
            other => panic!("{key}: {other} {:?}", response.reply()),
        }
    }
    assert!(acknowledged > 0);
    assert_eq!(app.entry_count(), SEED_ENTRIES + acknowledged);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000 + acknowledged);

    // Each refused write succeeds when retried with its key; each
    // acknowledged one replays.
    for (key, response) in &answered {
        let retried = app.post_topup("user_alice", "GOLD", 1, key);
        let expected = if response.status == 201 { 200 } else { 201 };
        assert_eq!(retried.status, expected, "{key}: {:?}", retried.body);
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES + WRITERS as i64);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000 + WRITERS as i64);
    assert_verify_passes(&app.db_path);
}
