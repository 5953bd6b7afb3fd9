//! Crash safety: a write acknowledged with 2xx survives SIGKILL, a retry of a
//! request whose answer was lost writes at most one entry, and `wallet verify`
//! catches a ledger altered behind the service's back.
//!
//! The workload here (`Op`, `send`, `Workload`) is also what `cli.rs` uses to
//! keep writes in flight while it stops the server gracefully.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::helpers::{run_wallet, TestApp, SEED_ENTRIES};

/// Every workload user starts with this much GOLD, so no spend of the
/// workload is ever short and every request it sends can succeed.
const OPENING_BALANCE: u64 = 1_000_000;
/// Bounds on one workload thread: it stops at the first request that gets no
/// answer, and in any case after this many requests or this long.
const OPS_PER_THREAD_MAX: usize = 5_000;
const WORKLOAD_TIME_MAX: Duration = Duration::from_secs(30);

/// One value-moving request, kept as a client keeps it to retry: the same key
/// and body again. `operation` is `topup`, `bonus`, `spend`, `transfer` (to
/// `to`), `batch` (a topup of `amount` to `user`, then a transfer of it to
/// `to`, in one step) or `reverse` (all of the topup `reverses` made to
/// `user`, of `amount`), `hold` (of `amount` on `user`), `capture` (all of
/// the hold `hold`, of `amount` on `user`, to the Treasury) or `void` (of
/// the hold `hold`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Op {
    pub operation: &'static str,
    pub user: String,
    pub amount: u64,
    pub key: String,
    pub to: Option<String>,
    pub reverses: Option<String>,
    pub hold: Option<String>,
}

impl Op {
    pub fn entry(operation: &'static str, user: &str, amount: u64, key: String) -> Op {
        Op {
            operation,
            user: user.to_owned(),
            amount,
            key,
            to: None,
            reverses: None,
            hold: None,
        }
    }

    /// The status of its first, new answer: a void answers 200.
    pub fn created_status(&self) -> u16 {
        if self.operation == "void" {
            200
        } else {
            201
        }
    }

    pub fn path(&self) -> String {
        match (self.operation, &self.reverses) {
            ("batch", _) => "/batch".to_owned(),
            ("reverse", Some(id)) => format!("/transactions/{id}/reverse"),
            ("hold", _) => format!("/wallets/{}/holds", self.user),
            ("capture" | "void", _) => format!(
                "/holds/{}/{}",
                self.hold.as_deref().unwrap_or_default(),
                self.operation
            ),
            _ => format!("/wallets/{}/{}", self.user, self.operation),
        }
    }

    pub fn body(&self) -> Value {
        match self.operation {
            "transfer" => json!({"to": self.to, "asset": "GOLD", "amount": self.amount,
                                  "idempotencyKey": self.key}),
            "batch" => json!({"idempotencyKey": self.key, "operations": [
                {"type": "topup", "userId": self.user, "asset": "GOLD", "amount": self.amount},
                {"type": "transfer", "userId": self.user, "to": self.to, "asset": "GOLD",
                 "amount": self.amount},
            ]}),
            "reverse" | "capture" | "void" => json!({"idempotencyKey": self.key}),
            "hold" => json!({"asset": "GOLD", "amount": self.amount, "idempotencyKey": self.key,
                              "expiresInSeconds": 600}),
            _ => json!({"asset": "GOLD", "amount": self.amount, "idempotencyKey": self.key}),
        }
    }

    /// The ledger entries this request makes when applied.
    pub fn entries(&self) -> i64 {
        match self.operation {
            "batch" => 2,
            // Holding and voiding write no entry.
            "hold" | "void" => 0,
            _ => 1,
        }
    }

    /// The changes to users' GOLD balances when this request is applied.
    pub fn deltas(&self) -> Vec<(&str, i64)> {
        let amount = i64::try_from(self.amount).expect("small amounts");
        let to = self.to.as_deref().unwrap_or_default();
        match self.operation {
            "spend" | "reverse" | "capture" => vec![(self.user.as_str(), -amount)],
            "hold" | "void" => vec![],
            "transfer" => vec![(self.user.as_str(), -amount), (to, amount)],
            "batch" => vec![(to, amount)],
            _ => vec![(self.user.as_str(), amount)],
        }
    }
}

/// An answer read whole. `body` is `None` when it was not JSON.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub replayed: bool,
    pub body: Option<Value>,
    pub text: String,
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `data` of the envelope, or `Value::Null`.
    pub fn data(&self) -> Value {
        self.body
            .as_ref()
            .map(|body| body["data"].clone())
            .unwrap_or(Value::Null)
    }

    /// What is wrong with this answer's envelope (API.md, Conventions), if anything.
    pub fn envelope_problem(&self) -> Option<String> {
        let Some(body) = &self.body else {
            return Some(format!(
                "{}: the body is not JSON: {:?}",
                self.status, self.text
            ));
        };
        let problem = match body["success"].as_bool() {
            Some(true) if !self.is_success() => Some("success: true on a failure status"),
            Some(true) if body["data"].is_null() => Some("success without data"),
            Some(true) if !body["error"].is_null() => Some("success with an error"),
            Some(true) => None,
            Some(false) if self.is_success() => Some("success: false on a 2xx"),
            Some(false) if !body["data"].is_null() => Some("failure with data"),
            Some(false) => {
                let code = body["error"]["code"].as_str().unwrap_or_default();
                let upper_snake =
                    !code.is_empty() && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_');
                let message = body["error"]["message"].as_str().unwrap_or_default();
                if !upper_snake {
                    Some("error.code is not UPPER_SNAKE")
                } else if message.is_empty() {
                    Some("error.message is missing")
                } else {
                    None
                }
            }
            None => Some("no boolean `success`"),
        };
        problem.map(|problem| format!("{}: {problem}: {body}", self.status))
    }
}

/// Sends `op`; an error means no answer arrived (refused, reset, cut short).
pub(crate) fn send(client: &Client, address: &str, op: &Op) -> Result<Reply, reqwest::Error> {
    let response = client
        .post(format!("{address}{}", op.path()))
        .json(&op.body())
        .send()?;
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    let text = response.text()?;
    Ok(Reply {
        status,
        replayed,
        body: serde_json::from_str(&text).ok(),
        text,
    })
}

/// Every request a workload sent, sorted by what came back.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    /// 2xx: the request and the `data` it was answered with.
    pub acked: Vec<(Op, Value)>,
    /// Any other answer.
    pub refused: Vec<(Op, Reply)>,
    /// Sent, and no answer came: it may or may not have been applied.
    pub unanswered: Vec<Op>,
    /// Answers that were not the envelope of API.md, described.
    pub bad_envelopes: Vec<String>,
}

/// Threads sending topups, bonuses and spends of GOLD with unique keys until a
/// request goes unanswered (the server is gone) or their bounds run out.
pub(crate) struct Workload {
    tally: Arc<Mutex<Tally>>,
    acks: Arc<AtomicUsize>,
    threads: Vec<JoinHandle<()>>,
}

impl Workload {
    pub fn start(
        client: &Client,
        address: &str,
        users: &[String],
        thread_count: usize,
        tag: &str,
    ) -> Workload {
        let tally = Arc::new(Mutex::new(Tally::default()));
        let acks = Arc::new(AtomicUsize::new(0));
        let threads = (0..thread_count)
            .map(|thread| {
                let client = client.clone();
                let address = address.to_owned();
                let users = users.to_vec();
                let tag = tag.to_owned();
                let tally = Arc::clone(&tally);
                let acks = Arc::clone(&acks);
                std::thread::spawn(move || {
                    let deadline = Instant::now() + WORKLOAD_TIME_MAX;
                    // This thread's acknowledged topups not reversed yet:
                    // (transaction id, user, amount).
                    let mut reversible: Vec<(String, String, u64)> = Vec::new();
                    // This thread's acknowledged holds not closed yet:
                    // (hold id, user, amount).
                    let mut open_holds: Vec<(String, String, u64)> = Vec::new();
                    for i in 0..OPS_PER_THREAD_MAX {
                        if Instant::now() > deadline {
                            break;
                        }
                        let user = &users[(thread * 7 + i) % users.len()];
                        let other = &users[(thread * 7 + i + 1) % users.len()];
                        let amount = 1 + ((thread * 31 + i * 17) % 50) as u64;
                        let key = format!("{tag}-t{thread}-{i}");
                        let operation = [
                            "topup", "spend", "bonus", "transfer", "batch", "reverse", "hold",
                            "capture", "hold", "void",
                        ][(thread + i) % 10];
                        let op = match operation {
                            "transfer" | "batch" if other != user => Op {
                                to: Some(other.clone()),
                                ..Op::entry(operation, user, amount, key)
                            },
                            "reverse" => match reversible.pop() {
                                Some((id, reversed_user, reversed_amount)) => Op {
                                    reverses: Some(id),
                                    ..Op::entry("reverse", &reversed_user, reversed_amount, key)
                                },
                                None => Op::entry("topup", user, amount, key),
                            },
                            "capture" | "void" => match open_holds.pop() {
                                Some((id, held_user, held_amount)) => Op {
                                    hold: Some(id),
                                    ..Op::entry(operation, &held_user, held_amount, key)
                                },
                                None => Op::entry("hold", user, amount, key),
                            },
                            "transfer" | "batch" => Op::entry("topup", user, amount, key),
                            _ => Op::entry(operation, user, amount, key),
                        };
                        let reply = send(&client, &address, &op);
                        if let Some(problem) = reply.as_ref().ok().and_then(Reply::envelope_problem)
                        {
                            tally.lock().unwrap().bad_envelopes.push(problem);
                        }
                        match reply {
                            Ok(reply) if reply.is_success() => {
                                let data = reply.data();
                                if op.operation == "hold" {
                                    if let Some(id) = data["hold"]["id"].as_str() {
                                        open_holds.push((
                                            id.to_owned(),
                                            op.user.clone(),
                                            op.amount,
                                        ));
                                    }
                                }
                                if op.operation == "topup" {
                                    if let Some(id) = data["transaction"]["id"].as_str() {
                                        reversible.push((
                                            id.to_owned(),
                                            op.user.clone(),
                                            op.amount,
                                        ));
                                    }
                                }
                                tally.lock().unwrap().acked.push((op, data));
                                acks.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok(reply) => tally.lock().unwrap().refused.push((op, reply)),
                            Err(_) => {
                                tally.lock().unwrap().unanswered.push(op);
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        Workload {
            tally,
            acks,
            threads,
        }
    }

    /// Polls until at least `count` requests have been acknowledged.
    pub fn wait_for_acks(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.acks.load(Ordering::SeqCst) < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} writes were acknowledged in {timeout:?}",
                self.acks.load(Ordering::SeqCst)
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits for every thread to end (the server must be gone, or their
    /// bounds run out) and returns what they saw.
    pub fn finish(self) -> Tally {
        for thread in self.threads {
            thread.join().expect("a workload thread panicked");
        }
        Arc::try_unwrap(self.tally)
            .expect("no thread holds the tally")
            .into_inner()
            .unwrap()
    }
}

/// Opens each user's wallet with `OPENING_BALANCE` GOLD; returns the requests.
pub(crate) fn open_wallets(app: &TestApp, users: &[String]) -> Vec<(Op, Value)> {
    users
        .iter()
        .map(|user| {
            let op = Op::entry("topup", user, OPENING_BALANCE, format!("opening-{user}"));
            let reply = send(&app.client, &app.address, &op).expect("the opening topup");
            assert_eq!(reply.status, 201, "{reply:?}");
            (op, reply.data())
        })
        .collect()
}

/// Re-sends every acknowledged request: each must be a replay of its original
/// answer, whole (API.md, Idempotency).
pub(crate) fn assert_all_replay(app: &TestApp, acked: &[(Op, Value)]) {
    for (op, original) in acked {
        if let Some(problem) = replay_problem(app, op, original) {
            panic!("{problem}");
        }
    }
}

/// What is wrong with the replay of an acknowledged request, if anything.
pub(crate) fn replay_problem(app: &TestApp, op: &Op, original: &Value) -> Option<String> {
    let reply = match send(&app.client, &app.address, op) {
        Ok(reply) => reply,
        Err(error) => return Some(format!("the replay of {op:?} got no answer: {error}")),
    };
    if (reply.status, reply.replayed) != (200, true) {
        return Some(format!("the acknowledged {op:?} did not replay: {reply:?}"));
    }
    if &reply.data() != original {
        return Some(format!(
            "the replay of {op:?} differs from its original answer: {reply:?}"
        ));
    }
    None
}

/// The entries the acknowledged requests made.
pub(crate) fn entries_of(acked: &[(Op, Value)]) -> i64 {
    acked.iter().map(|(op, _)| op.entries()).sum()
}

/// Each user's GOLD balance is its opening balance moved by every applied request.
pub(crate) fn assert_balances_match(app: &TestApp, users: &[String], applied: &[(Op, Value)]) {
    let mismatches = balance_mismatches(app, users, applied);
    assert!(
        mismatches.is_empty(),
        "balances are not the sum of their acknowledged writes: {mismatches:?}"
    );
}

/// Users whose GOLD balance is not the sum of the applied requests, described.
pub(crate) fn balance_mismatches(
    app: &TestApp,
    users: &[String],
    applied: &[(Op, Value)],
) -> Vec<String> {
    let mut expected: HashMap<&str, i64> = users.iter().map(|user| (user.as_str(), 0)).collect();
    for (op, _) in applied {
        for (user, delta) in op.deltas() {
            *expected.get_mut(user).expect("a workload user") += delta;
        }
    }
    users
        .iter()
        .filter_map(|user| {
            let balance = app.balance(user, "GOLD");
            (balance != expected[user.as_str()])
                .then(|| format!("{user}: {balance}, expected {}", expected[user.as_str()]))
        })
        .collect()
}

/// Every acknowledged capture and void left its hold CAPTURED or VOIDED,
/// never the other: no hold is both captured and released.
pub(crate) fn hold_problems(app: &TestApp, acked: &[(Op, Value)]) -> Vec<String> {
    let mut closed: HashMap<&str, &str> = HashMap::new();
    let mut problems = Vec::new();
    for (op, _) in acked {
        let (Some(id), status) = (op.hold.as_deref(), op.operation) else {
            continue;
        };
        let expected = if status == "capture" {
            "CAPTURED"
        } else {
            "VOIDED"
        };
        if let Some(other) = closed.insert(id, expected) {
            problems.push(format!(
                "hold {id} acknowledged as {other} and as {expected}"
            ));
        }
        let read = app.get(&format!("/holds/{id}"));
        if read.body["data"]["status"] != expected {
            problems.push(format!(
                "hold {id}: {expected} acknowledged, reads {:?}",
                read.body
            ));
        }
    }
    problems
}

pub(crate) fn assert_verify_passes(db_path: &Path) {
    if let Some(failure) = verify_failure(db_path) {
        panic!("{failure}");
    }
}

/// `wallet verify`'s output when it does not pass.
pub(crate) fn verify_failure(db_path: &Path) -> Option<String> {
    let db = db_path.to_str().expect("a UTF-8 path");
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", db]);
    (!status.success() || !stdout.contains("verify: OK"))
        .then(|| format!("verify failed: {status}\n{stdout}\n{stderr}"))
}

pub(crate) fn users(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn acknowledged_writes_survive_three_sigkills_and_retries_write_at_most_once() {
    const THREADS: usize = 6;
    const ACKS_BEFORE_KILL: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let users = users("crash", 4);
    let mut app = TestApp::spawn_on(&db_path);
    let mut acked = open_wallets(&app, &users);

    for cycle in 0..3 {
        let workload = Workload::start(
            &app.client,
            &app.address,
            &users,
            THREADS,
            &format!("crash-c{cycle}"),
        );
        workload.wait_for_acks(ACKS_BEFORE_KILL, Duration::from_secs(15));
        app.kill();
        let tally = workload.finish();
        // The file as the crash left it, before any restart recovers it.
        assert_verify_passes(&db_path);
        assert!(tally.bad_envelopes.is_empty(), "{:?}", tally.bad_envelopes);
        assert!(
            tally.refused.is_empty(),
            "cycle {cycle}: requests were refused: {:?}",
            tally.refused
        );
        // Each thread was still sending when the server died.
        assert_eq!(tally.unanswered.len(), THREADS, "cycle {cycle}");
        assert!(tally.acked.len() >= ACKS_BEFORE_KILL);
        acked.extend(tally.acked);

        app = TestApp::spawn_on(&db_path);
        // Every acknowledged request of every cycle so far is on disk.
        assert_all_replay(&app, &acked);
        // A request whose answer was lost is retried with its key and body:
        // it is applied now or was applied then, never twice.
        let entries_before_retries = app.entry_count();
        let mut created_by_retries = 0;
        for op in tally.unanswered {
            let reply = send(&app.client, &app.address, &op).expect("a retry is answered");
            match (reply.status, reply.replayed) {
                (status, false) if status == op.created_status() => {
                    created_by_retries += op.entries()
                }
                (200, true) => {}
                _ => panic!("cycle {cycle}: the retry of {op:?} got {reply:?}"),
            }
            acked.push((op, reply.data()));
        }
        assert_eq!(
            app.entry_count(),
            entries_before_retries + created_by_retries,
            "cycle {cycle}"
        );
        // No phantom entries: the entries of every key ever acknowledged.
        assert_eq!(
            app.entry_count(),
            SEED_ENTRIES + entries_of(&acked),
            "cycle {cycle}"
        );
        assert_verify_passes(&db_path);
        assert_balances_match(&app, &users, &acked);
        let holds = hold_problems(&app, &acked);
        assert!(holds.is_empty(), "cycle {cycle}: {holds:?}");
    }
    // The retried requests of the last cycle replay too.
    assert_all_replay(&app, &acked);
}

/// A server's file with a little history, the server stopped; returns the
/// path and the `seq` of a topup to `tamper-user`.
pub(crate) fn stopped_ledger_with_history(dir: &Path) -> (PathBuf, i64) {
    let db_path = dir.join("wallet.db");
    let app = TestApp::spawn_on(&db_path);
    assert_eq!(
        app.post_topup("tamper-user", "GOLD", 300, "t-1").status,
        201
    );
    assert_eq!(
        app.post_spend("tamper-user", "GOLD", 120, "t-2").status,
        201
    );
    assert_eq!(app.post_bonus("tamper-user", "GOLD", 40, "t-3").status, 201);
    assert!(app.terminate().success());
    assert_verify_passes(&db_path);
    let seq = open_read_write(&db_path)
        .query_row(
            "SELECT e.seq FROM ledger_entries e JOIN idempotency_records r ON r.id = e.request_id
              WHERE r.key = 't-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    (db_path, seq)
}

pub(crate) fn open_read_write(db_path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(db_path).expect("the database opens read-write")
}

/// Runs verify expecting failure; returns stdout and stderr together.
fn verify_output_expecting_failure(db_path: &Path) -> String {
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", db_path.to_str().unwrap()]);
    assert!(
        !status.success(),
        "verify passed a tampered ledger:\n{stdout}\n{stderr}"
    );
    assert!(!stdout.contains("verify: OK"), "{stdout}");
    format!("{stdout}\n{stderr}")
}

#[test]
fn verify_fails_when_an_entrys_amount_was_changed_behind_the_services_back() {
    let dir = tempfile::tempdir().unwrap();
    let (db_path, seq) = stopped_ledger_with_history(dir.path());
    let conn = open_read_write(&db_path);
    conn.execute_batch("DROP TRIGGER ledger_entries_refuse_update")
        .unwrap();
    let changed = conn
        .execute(
            "UPDATE ledger_entries SET amount = amount + 1000 WHERE seq = ?1",
            [seq],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let output = verify_output_expecting_failure(&db_path);
    assert!(
        output.contains(&format!("entry {seq}")),
        "verify does not name the altered entry {seq}:\n{output}"
    );
}

#[test]
fn verify_fails_when_a_postings_balance_after_was_changed_behind_the_services_back() {
    let dir = tempfile::tempdir().unwrap();
    let (db_path, seq) = stopped_ledger_with_history(dir.path());
    let conn = open_read_write(&db_path);
    conn.execute_batch("DROP TRIGGER postings_refuse_update")
        .unwrap();
    let account: i64 = conn
        .query_row(
            "SELECT id FROM accounts WHERE owner_id = 'tamper-user'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let changed = conn
        .execute(
            "UPDATE postings SET balance_after = balance_after + 5
              WHERE account_id = ?1 AND entry_seq = ?2",
            [account, seq],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let output = verify_output_expecting_failure(&db_path);
    assert!(
        output.contains(&format!("entry {seq}")) && output.contains(&format!("account {account}")),
        "verify does not name the altered posting (entry {seq}, account {account}):\n{output}"
    );
}

#[test]
fn the_append_only_triggers_refuse_update_and_delete_of_entries_and_postings() {
    let dir = tempfile::tempdir().unwrap();
    let (db_path, seq) = stopped_ledger_with_history(dir.path());
    let conn = open_read_write(&db_path);
    let snapshot = |conn: &rusqlite::Connection| -> (i64, i64, i64, i64) {
        conn.query_row(
            "SELECT (SELECT count(*) FROM ledger_entries),
                    (SELECT count(*) FROM postings),
                    (SELECT amount FROM ledger_entries WHERE seq = ?1),
                    (SELECT sum(balance_after) FROM postings WHERE entry_seq = ?1)",
            [seq],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .unwrap()
    };
    let before = snapshot(&conn);
    let refused = [
        "UPDATE ledger_entries SET amount = amount + 1 WHERE seq = ?1",
        "DELETE FROM ledger_entries WHERE seq = ?1",
        "UPDATE postings SET balance_after = balance_after + 1 WHERE entry_seq = ?1",
        "DELETE FROM postings WHERE entry_seq = ?1",
    ];
    for sql in refused {
        let error = conn
            .execute(sql, [seq])
            .expect_err(&format!("the ledger accepted: {sql}"));
        assert!(
            error.to_string().contains("append-only"),
            "{sql} was refused, but not by the append-only trigger: {error}"
        );
    }
    assert_eq!(snapshot(&conn), before);
    drop(conn);
    assert_verify_passes(&db_path);
}
