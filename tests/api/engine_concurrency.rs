//! The ledger engine's writes under real concurrency: many threads, each
//! with its own HTTP client (and so its own connections), released together
//! by a barrier against one server. Transfers never overdraw and never lose
//! value, opposite transfers never deadlock, concurrent partial reversals
//! never add up to more than their entry, and a failing batch leaves no
//! trace even when committed alongside other writes.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::crash::assert_verify_passes;
use crate::engine::{history, snapshot};
use crate::helpers::TestApp;

/// Every request of these tests is answered within this, or the test fails:
/// a generous bound for a 2-core machine shared with other tests, far
/// below a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// All of one test's concurrent requests are answered within this.
const ALL_ANSWERED_WITHIN: Duration = Duration::from_secs(60);

/// One answer, read whole on a client thread.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) replayed: bool,
    pub(crate) body: Value,
}

/// A client of its own: its own connection pool, so each thread talks to
/// the server over its own connection.
fn own_client() -> Client {
    Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .pool_max_idle_per_host(1)
        .build()
        .expect("an HTTP client")
}

fn post(client: &Client, url: &str, body: &Value) -> Answer {
    let response = client
        .post(url)
        .json(body)
        .send()
        .unwrap_or_else(|error| panic!("POST {url} was not answered: {error}"));
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|value| value == "true");
    let text = response.text().expect("a readable body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("the body of a {status} is not JSON: {text:?}"));
    Answer {
        status,
        replayed,
        body,
    }
}

/// Sends every (path, body) from its own thread with its own client, all
/// released together by one barrier; returns the answers in the order of
/// `requests`. Fails the test if they are not all answered within
/// `ALL_ANSWERED_WITHIN` (a deadlock, or a lost request).
pub(crate) fn post_all_at_once(app: &TestApp, requests: Vec<(String, Value)>) -> Vec<Answer> {
    let count = requests.len();
    let start = Arc::new(Barrier::new(count));
    let (sender, receiver) = mpsc::channel();
    for (index, (path, body)) in requests.into_iter().enumerate() {
        let url = app.url(&path);
        let start = Arc::clone(&start);
        let sender = sender.clone();
        std::thread::spawn(move || {
            let client = own_client();
            start.wait();
            let answer = post(&client, &url, &body);
            let _ = sender.send((index, answer));
        });
    }
    drop(sender);
    let deadline = Instant::now() + ALL_ANSWERED_WITHIN;
    let mut answers: Vec<Option<Answer>> = vec![None; count];
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok((index, answer)) => answers[index] = Some(answer),
            Err(error) => {
                let answered = answers.iter().filter(|a| a.is_some()).count();
                panic!("only {answered} of {count} requests were answered in time ({error:?})");
            }
        }
    }
    answers.into_iter().map(Option::unwrap).collect()
}

fn transfer(from: &str, to: &str, amount: u64, key: &str) -> (String, Value) {
    (
        format!("/wallets/{from}/transfer"),
        json!({"to": to, "asset": "GOLD", "amount": amount, "idempotencyKey": key}),
    )
}

fn topup(app: &TestApp, user: &str, amount: u64, key: &str) -> Value {
    let response = app.post_topup(user, "GOLD", amount, key);
    assert_eq!(response.status, 201, "{:?}", response.body);
    response.data()["transaction"].clone()
}

/// Each entry of a user's GOLD history, newest first, follows from the one
/// before it: the balance after it is the one before, plus a CREDIT or
/// minus a DEBIT. The writes were applied one after another.
fn assert_balances_chain(app: &TestApp, user: &str) -> Vec<Value> {
    let entries = history(app, user, "&asset=GOLD");
    let mut oldest_first = entries.clone();
    oldest_first.reverse();
    let mut balance = 0;
    for entry in &oldest_first {
        let amount = entry["amount"].as_i64().unwrap();
        balance += match entry["direction"].as_str() {
            Some("CREDIT") => amount,
            Some("DEBIT") => -amount,
            other => panic!("direction {other:?}"),
        };
        assert_eq!(entry["balanceAfter"], balance, "{user}: {entry:?}");
        assert!(balance >= 0, "{user} went below zero: {entry:?}");
    }
    assert_eq!(app.balance(user, "GOLD"), balance);
    entries
}

/// Goal: 100 concurrent transfers of 10 from a user holding 500, spread
/// over 10 recipients, never overdraw: exactly 50 are 201, the other 50 are
/// 422 INSUFFICIENT_FUNDS with the balance of 0 they saw, the sender ends at
/// 0, the recipients hold the 500 between them (each what its answers
/// say), and `wallet verify` passes.
#[test]
fn one_hundred_concurrent_transfers_of_ten_from_five_hundred_make_exactly_fifty() {
    const TRANSFERS: usize = 100;
    const RECIPIENTS: usize = 10;
    let app = TestApp::spawn();
    let sender = "generous";
    topup(&app, sender, 500, "fund-generous");
    let recipients: Vec<String> = (0..RECIPIENTS).map(|i| format!("friend-{i}")).collect();
    let requests = (0..TRANSFERS)
        .map(|n| {
            transfer(
                sender,
                &recipients[n % RECIPIENTS],
                10,
                &format!("gift-{n}"),
            )
        })
        .collect();

    let answers = post_all_at_once(&app, requests);
    let mut balances_after = Vec::new();
    let mut sent_to: BTreeMap<String, i64> = BTreeMap::new();
    let mut short = 0;
    for (n, answer) in answers.iter().enumerate() {
        match answer.status {
            201 => {
                assert!(!answer.replayed);
                let data = &answer.body["data"];
                let transaction = &data["transaction"];
                assert_eq!(transaction["type"], "TRANSFER");
                assert_eq!(transaction["direction"], "DEBIT");
                assert_eq!(transaction["amount"], 10);
                assert_eq!(transaction["counterparty"], recipients[n % RECIPIENTS]);
                assert_eq!(transaction["balanceAfter"], data["balance"]);
                assert_eq!(data["available"], data["balance"]);
                balances_after.push(data["balance"].as_i64().unwrap());
                *sent_to
                    .entry(recipients[n % RECIPIENTS].clone())
                    .or_default() += 10;
            }
            422 => {
                let error = &answer.body["error"];
                assert_eq!(error["code"], "INSUFFICIENT_FUNDS", "{:?}", answer.body);
                // Only tens ever leave, so a short balance is 0.
                assert_eq!(
                    error["details"],
                    json!({"balance": 0, "available": 0, "requested": 10})
                );
                short += 1;
            }
            other => panic!("a transfer got {other}: {:?}", answer.body),
        }
    }
    assert_eq!((balances_after.len(), short), (50, 50));
    // One after another: each success left a different balance.
    balances_after.sort_unstable();
    assert_eq!(
        balances_after,
        (0..50).map(|step| step * 10).collect::<Vec<i64>>()
    );

    assert_eq!(app.balance(sender, "GOLD"), 0);
    let mut received = 0;
    for recipient in &recipients {
        let balance = app.balance(recipient, "GOLD");
        assert_eq!(
            balance,
            sent_to.get(recipient).copied().unwrap_or(0),
            "{recipient}"
        );
        received += balance;
    }
    assert_eq!(received, 500);
    let entries = assert_balances_chain(&app, sender);
    assert_eq!(entries.len(), 51);
    assert_verify_passes(&app.db_path);
}

/// Goal: 50 transfers A -> B and 50 B -> A, all at once, each side funded
/// for all of its own: every one succeeds, none deadlocks (all answered
/// well within the timeout), nothing is lost (A and B end as they began,
/// the total preserved), each history chains, and `wallet verify` passes.
#[test]
fn fifty_transfers_each_way_at_once_all_succeed_without_deadlock_or_loss() {
    const EACH_WAY: usize = 50;
    let app = TestApp::spawn();
    let (a, b) = ("player-a", "player-b");
    topup(&app, a, 500, "fund-a");
    topup(&app, b, 500, "fund-b");
    let mut requests = Vec::new();
    for n in 0..EACH_WAY {
        requests.push(transfer(a, b, 10, &format!("a-to-b-{n}")));
        requests.push(transfer(b, a, 10, &format!("b-to-a-{n}")));
    }

    let started = Instant::now();
    let answers = post_all_at_once(&app, requests);
    let took = started.elapsed();
    for answer in &answers {
        assert_eq!(answer.status, 201, "{:?}", answer.body);
        assert_eq!(answer.body["data"]["transaction"]["type"], "TRANSFER");
    }
    assert!(took < ALL_ANSWERED_WITHIN, "took {took:?}");
    assert_eq!((app.balance(a, "GOLD"), app.balance(b, "GOLD")), (500, 500));
    for user in [a, b] {
        let entries = assert_balances_chain(&app, user);
        // The topup, then 50 out and 50 in.
        assert_eq!(entries.len(), 1 + 2 * EACH_WAY, "{user}");
        let debits = entries.iter().filter(|e| e["direction"] == "DEBIT").count();
        assert_eq!(debits, EACH_WAY, "{user}");
        assert!(entries[..2 * EACH_WAY]
            .iter()
            .all(|e| e["type"] == "TRANSFER"));
    }
    assert_verify_passes(&app.db_path);
}

/// Goal: 20 concurrent partial reversals of 10 against one SPEND of 100:
/// exactly 10 succeed, the other 10 are 422 REVERSAL_EXCEEDS_ORIGINAL with
/// `reversible: 0`; the user is refunded exactly 100, the entry shows
/// `reversedAmount` 100, and `wallet verify` passes.
#[test]
fn twenty_concurrent_partial_reversals_of_ten_undo_exactly_the_hundred() {
    const REVERSALS: usize = 20;
    let app = TestApp::spawn();
    let user = "refundee";
    topup(&app, user, 100, "fund-refundee");
    let spend = app.post_spend(user, "GOLD", 100, "the-purchase");
    assert_eq!(spend.status, 201, "{:?}", spend.body);
    let id = spend.data()["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.balance(user, "GOLD"), 0);

    let requests = (0..REVERSALS)
        .map(|n| {
            (
                format!("/transactions/{id}/reverse"),
                json!({"amount": 10, "idempotencyKey": format!("refund-{n}")}),
            )
        })
        .collect();
    let answers = post_all_at_once(&app, requests);
    let mut balances_after = Vec::new();
    let mut exceeded = 0;
    for answer in &answers {
        match answer.status {
            201 => {
                let transaction = &answer.body["data"]["transaction"];
                assert_eq!(transaction["type"], "REVERSAL");
                assert_eq!(transaction["reverses"], id.as_str());
                assert_eq!(transaction["direction"], "CREDIT");
                assert_eq!(transaction["amount"], 10);
                balances_after.push(answer.body["data"]["balance"].as_i64().unwrap());
            }
            422 => {
                let error = &answer.body["error"];
                assert_eq!(
                    error["code"], "REVERSAL_EXCEEDS_ORIGINAL",
                    "{:?}",
                    answer.body
                );
                assert_eq!(error["details"], json!({"reversible": 0}));
                exceeded += 1;
            }
            other => panic!("a reversal got {other}: {:?}", answer.body),
        }
    }
    assert_eq!((balances_after.len(), exceeded), (10, 10));
    balances_after.sort_unstable();
    assert_eq!(
        balances_after,
        (1..=10).map(|step| step * 10).collect::<Vec<i64>>()
    );
    assert_eq!(app.balance(user, "GOLD"), 100);
    let original = app.get(&format!("/transactions/{id}"));
    assert_eq!(original.data()["reversedAmount"], 100);
    let entries = assert_balances_chain(&app, user);
    let reversals = entries.iter().filter(|e| e["type"] == "REVERSAL").count();
    assert_eq!(reversals, 10);
    assert_verify_passes(&app.db_path);
}

/// Goal: a batch that fails at its third operation writes nothing, even
/// when 20 copies of it (each with its own key) race 40 successful writes
/// of other users, which the writer commits in the same transactions: each
/// copy is 422 INSUFFICIENT_FUNDS with `details.operation` 2 and the
/// balance the first two operations left; every balance and every history
/// of the batch's users is exactly as before (a new user still has no
/// wallet), every other write counts, and `wallet verify` passes.
#[test]
fn a_batch_failing_at_its_third_operation_leaves_no_trace_amid_concurrent_writes() {
    const FAILING: usize = 20;
    const BYSTANDERS: usize = 40;
    let app = TestApp::spawn();
    let users = ["user_alice", "user_bob", "user_carol"];
    let before = snapshot(&app, &users);
    assert_eq!(before[2].1, 404, "carol has no wallet yet");
    let entries_before = app.entry_count();

    let operations = json!([
        {"type": "transfer", "userId": "user_alice", "to": "user_bob", "asset": "GOLD", "amount": 100},
        {"type": "topup", "userId": "user_carol", "asset": "GOLD", "amount": 50},
        {"type": "spend", "userId": "user_bob", "asset": "GOLD", "amount": 1_000_000},
        {"type": "bonus", "userId": "user_alice", "asset": "DIAMOND", "amount": 5}
    ]);
    let mut requests = Vec::new();
    for n in 0..FAILING.max(BYSTANDERS) {
        if n < FAILING {
            requests.push((
                "/batch".to_owned(),
                json!({"idempotencyKey": format!("doomed-{n}"), "operations": operations}),
            ));
        }
        if n < BYSTANDERS {
            requests.push((
                format!("/wallets/bystander-{n}/topup"),
                json!({"asset": "GOLD", "amount": 7, "idempotencyKey": format!("by-{n}")}),
            ));
        }
    }
    let answers = post_all_at_once(&app, requests);
    let mut failed = 0;
    for answer in &answers {
        if answer.status == 201 {
            assert_eq!(answer.body["data"]["balance"], 7, "{:?}", answer.body);
            continue;
        }
        assert_eq!(answer.status, 422, "{:?}", answer.body);
        assert_eq!(answer.body["error"]["code"], "INSUFFICIENT_FUNDS");
        assert_eq!(
            answer.body["error"]["details"],
            json!({"balance": 600, "available": 600, "requested": 1_000_000, "operation": 2})
        );
        failed += 1;
    }
    assert_eq!(failed, FAILING);

    assert_eq!(snapshot(&app, &users), before);
    let bystanders = i64::try_from(BYSTANDERS).unwrap();
    assert_eq!(app.entry_count(), entries_before + bystanders);
    for n in 0..BYSTANDERS {
        assert_eq!(app.balance(&format!("bystander-{n}"), "GOLD"), 7);
    }
    assert_verify_passes(&app.db_path);
}
