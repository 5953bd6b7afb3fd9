//! Many clients at once against one server. The single writer must line them
//! up: no balance goes below zero, one idempotency key names one entry however
//! many retries race, every acknowledged write counts, and reads are answered
//! while writes are queued.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::crash::assert_verify_passes;
use crate::helpers::TestApp;

/// No loop of these tests runs longer than this.
const TIME_MAX: Duration = Duration::from_secs(15);

/// One answer, read whole on a client thread.
#[derive(Debug)]
struct Answer {
    status: u16,
    replayed: bool,
    body: Value,
}

fn post(client: &Client, url: &str, body: &Value) -> Answer {
    let response = client
        .post(url)
        .json(body)
        .send()
        .expect("the POST is answered");
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

fn gold(amount: u64, key: &str) -> Value {
    json!({"asset": "GOLD", "amount": amount, "idempotencyKey": key})
}

/// The user's whole history, newest first, paged through with `nextCursor`.
fn history(app: &TestApp, user: &str) -> Vec<Value> {
    let mut items = Vec::new();
    // Empty on the first page: an empty `cursor=` is refused.
    let mut cursor = String::new();
    for _ in 0..100 {
        let page = app.get(&format!("/wallets/{user}/transactions?limit=200{cursor}"));
        assert_eq!(page.status, 200, "{:?}", page.body);
        items.extend(page.data()["items"].as_array().unwrap().iter().cloned());
        match page.data()["nextCursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return items,
        }
    }
    panic!("{user}'s history did not end within 100 pages");
}

/// Polls the user's GOLD balance from another thread until `stop` is set;
/// returns every (status, balance) seen, in order.
fn watch_balance(app: &TestApp, user: &str, stop: &Arc<AtomicBool>) -> JoinHandle<Vec<(u16, i64)>> {
    let client = app.client.clone();
    let url = app.url(&format!("/wallets/{user}/balance"));
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        let deadline = Instant::now() + TIME_MAX;
        let mut seen = Vec::new();
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline && seen.len() < 100_000 {
            let response = client.get(&url).send().expect("the GET is answered");
            let status = response.status().as_u16();
            let body: Value = response.json().expect("a JSON body");
            let gold = body["data"]["balances"]
                .as_array()
                .and_then(|rows| rows.iter().find(|row| row["asset"] == "GOLD"))
                .and_then(|row| row["balance"].as_i64())
                .unwrap_or(i64::MIN);
            seen.push((status, gold));
        }
        seen
    })
}

#[test]
fn two_hundred_concurrent_spends_of_ten_from_one_thousand_leave_exactly_zero() {
    const THREADS: usize = 20;
    const SPENDS_PER_THREAD: usize = 10;
    let app = TestApp::spawn();
    let user = "one-spender";
    assert_eq!(
        app.post_topup(user, "GOLD", 1000, "spender-topup").status,
        201
    );

    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = watch_balance(&app, user, &stop_watching);
    let start = Arc::new(Barrier::new(THREADS));
    let spenders: Vec<_> = (0..THREADS)
        .map(|thread| {
            let client = app.client.clone();
            let url = app.url(&format!("/wallets/{user}/spend"));
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                (0..SPENDS_PER_THREAD)
                    .map(|i| post(&client, &url, &gold(10, &format!("spend-{thread}-{i}"))))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let answers: Vec<Answer> = spenders
        .into_iter()
        .flat_map(|spender| spender.join().expect("a spender panicked"))
        .collect();
    stop_watching.store(true, Ordering::SeqCst);
    let watched = watcher.join().unwrap();

    assert_eq!(answers.len(), 200);
    let mut balances_after = Vec::new();
    let mut short = 0;
    for answer in &answers {
        match answer.status {
            201 => {
                assert!(!answer.replayed);
                let data = &answer.body["data"];
                assert_eq!(data["transaction"]["type"], "SPEND");
                assert_eq!(data["transaction"]["amount"], 10);
                assert_eq!(data["transaction"]["balanceAfter"], data["balance"]);
                balances_after.push(data["balance"].as_i64().unwrap());
            }
            422 => {
                let error = &answer.body["error"];
                assert_eq!(error["code"], "INSUFFICIENT_FUNDS", "{:?}", answer.body);
                // Only multiples of ten ever leave, so a short balance is 0.
                assert_eq!(
                    error["details"],
                    json!({"balance": 0, "available": 0, "requested": 10})
                );
                short += 1;
            }
            other => panic!("a spend got {other}: {:?}", answer.body),
        }
    }
    assert_eq!((balances_after.len(), short), (100, 100));
    // One after another: each successful spend left a different balance.
    balances_after.sort_unstable();
    let every_step: Vec<i64> = (0..100).map(|step| step * 10).collect();
    assert_eq!(balances_after, every_step);

    assert!(!watched.is_empty());
    for (status, balance) in watched {
        assert_eq!(status, 200);
        assert!(
            (0..=1000).contains(&balance),
            "a balance of {balance} was seen"
        );
    }
    assert_eq!(app.balance(user, "GOLD"), 0);
    let entries = history(&app, user);
    assert_eq!(entries.len(), 101);
    assert_eq!(entries.iter().filter(|e| e["type"] == "SPEND").count(), 100);
    assert_verify_passes(&app.db_path);
}

#[test]
fn twenty_concurrent_requests_with_one_key_write_one_entry_and_answer_alike() {
    const REQUESTS: usize = 20;
    let app = TestApp::spawn();
    let entries_before = app.entry_count();
    let start = Arc::new(Barrier::new(REQUESTS));
    let senders: Vec<_> = (0..REQUESTS)
        .map(|_| {
            let client = app.client.clone();
            let url = app.url("/wallets/racing-retries/topup");
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                post(&client, &url, &gold(25, "one-key-for-all"))
            })
        })
        .collect();
    let answers: Vec<Answer> = senders.into_iter().map(|s| s.join().unwrap()).collect();

    assert_eq!(app.entry_count(), entries_before + 1);
    let created: Vec<&Answer> = answers.iter().filter(|a| a.status == 201).collect();
    let replayed: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == 200 && a.replayed)
        .collect();
    assert_eq!(
        (created.len(), replayed.len()),
        (1, REQUESTS - 1),
        "{answers:?}"
    );
    assert!(!created[0].replayed);
    let original = &created[0].body["data"];
    assert!(original["transaction"]["id"].is_string());
    for answer in &replayed {
        assert_eq!(&answer.body["data"], original);
    }
    assert_eq!(app.balance("racing-retries", "GOLD"), 25);
}

/// A small deterministic generator, so a failure can be replayed.
fn next_random(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6_364_136_223_846_793_005)
        .wrapping_add(1_442_695_040_888_963_407);
    *state >> 33
}

#[test]
fn concurrent_topups_bonuses_and_spends_across_users_add_up_per_user() {
    const THREADS: usize = 16;
    const OPS_PER_THREAD: usize = 25;
    const OPENING: i64 = 100;
    let app = TestApp::spawn();
    let users: Vec<String> = (0..4).map(|i| format!("mixed-{i}")).collect();
    for user in &users {
        let key = format!("open-{user}");
        assert_eq!(
            app.post_topup(user, "GOLD", OPENING as u64, &key).status,
            201
        );
    }

    let start = Arc::new(Barrier::new(THREADS));
    let workers: Vec<_> = (0..THREADS)
        .map(|thread| {
            let client = app.client.clone();
            let address = app.address.clone();
            let users = users.clone();
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let mut state = thread as u64 + 1;
                start.wait();
                (0..OPS_PER_THREAD)
                    .map(|i| {
                        let user = users[next_random(&mut state) as usize % users.len()].clone();
                        let (operation, amount) = match next_random(&mut state) % 3 {
                            0 => ("topup", 1 + next_random(&mut state) % 50),
                            1 => ("bonus", 1 + next_random(&mut state) % 20),
                            _ => ("spend", 1 + next_random(&mut state) % 90),
                        };
                        let url = format!("{address}/wallets/{user}/{operation}");
                        let answer =
                            post(&client, &url, &gold(amount, &format!("mix-{thread}-{i}")));
                        (user, operation, amount as i64, answer)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let mut expected: HashMap<String, (i64, usize)> = users
        .iter()
        .map(|user| (user.clone(), (OPENING, 1)))
        .collect();
    for worker in workers {
        for (user, operation, amount, answer) in worker.join().unwrap() {
            match (answer.status, operation) {
                (201, _) => {
                    let (balance, entries) = expected.get_mut(&user).unwrap();
                    *balance += if operation == "spend" {
                        -amount
                    } else {
                        amount
                    };
                    *entries += 1;
                }
                (422, "spend") => {
                    assert_eq!(answer.body["error"]["code"], "INSUFFICIENT_FUNDS");
                    let details = &answer.body["error"]["details"];
                    assert!(details["balance"].as_i64().unwrap() < amount, "{details}");
                }
                _ => panic!("a {operation} of {amount} got {answer:?}"),
            }
        }
    }

    for user in &users {
        let (balance, entry_count) = expected[user];
        assert_eq!(app.balance(user, "GOLD"), balance, "{user}");
        let entries = history(&app, user);
        assert_eq!(entries.len(), entry_count, "{user}");
        // Oldest first, each balanceAfter follows from the one before it.
        let mut running = 0;
        for entry in entries.iter().rev() {
            let amount = entry["amount"].as_i64().unwrap();
            running += if entry["direction"] == "DEBIT" {
                -amount
            } else {
                amount
            };
            assert_eq!(entry["balanceAfter"], running, "{user}: {entry}");
        }
        assert_eq!(running, balance);
    }
    assert_verify_passes(&app.db_path);
}

#[test]
fn reads_are_answered_while_a_burst_of_writes_is_in_flight() {
    const WRITERS: usize = 8;
    const TOPUPS_PER_WRITER: usize = 30;
    const FINAL: i64 = 1 + (WRITERS * TOPUPS_PER_WRITER) as i64;
    let app = TestApp::spawn();
    let user = "busy-reader";
    assert_eq!(app.post_topup(user, "GOLD", 1, "reader-open").status, 201);

    let stop_reading = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| watch_balance(&app, user, &stop_reading))
        .collect();
    let start = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|thread| {
            let client = app.client.clone();
            let url = app.url(&format!("/wallets/{user}/topup"));
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..TOPUPS_PER_WRITER {
                    let answer = post(&client, &url, &gold(1, &format!("burst-{thread}-{i}")));
                    assert_eq!(answer.status, 201, "{answer:?}");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("a writer failed");
    }
    stop_reading.store(true, Ordering::SeqCst);

    let mut mid_burst = 0;
    for reader in readers {
        let seen = reader.join().unwrap();
        let mut previous = 1;
        for (status, balance) in seen {
            assert_eq!(status, 200);
            // Topups only: the balance a reader sees never goes back.
            assert!(
                (previous..=FINAL).contains(&balance),
                "{previous} then {balance}"
            );
            previous = balance;
            if 1 < balance && balance < FINAL {
                mid_burst += 1;
            }
        }
    }
    assert!(mid_burst > 0, "no read was answered while the writes ran");
    assert_eq!(app.balance(user, "GOLD"), FINAL);
}
