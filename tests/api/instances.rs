//! Several `wallet serve` processes on one PostgreSQL database, each a real
//! binary over real HTTP, on a throwaway cluster of the test's own (see
//! `postgres.rs`): every guarantee of one server holds across instances.
//! No overdraft, one entry per idempotency key, no deadlock reaching a
//! caller, a hold closed once, keys and event streams in force everywhere
//! within a second, pages that neither repeat nor skip an entry while every
//! instance writes, and `wallet verify` clean at the end.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{client_with_key, create_key, run_wallet, send, ApiResponse, TestApp};
use crate::postgres::Cluster;

/// `count` servers on a new database of `cluster`, seeded by the first.
/// Each client sends `key` when given, made with `keys` before they start.
pub(crate) fn instances(
    cluster: &Cluster,
    database: &str,
    count: usize,
    keys: &[(&str, &str)],
) -> (String, Vec<TestApp>, Vec<String>) {
    let url = cluster.database(database);
    let (status, stdout, stderr) = run_wallet(&["migrate", "--db", &url]);
    assert!(status.success(), "{stdout}{stderr}");
    let secrets: Vec<String> = keys
        .iter()
        .map(|(name, scopes)| create_key(Path::new(&url), name, scopes))
        .collect();
    let apps = (0..count)
        .map(|_| {
            TestApp::start(
                Path::new(&url),
                &["--seed-demo"],
                secrets.first().map(String::as_str),
            )
        })
        .collect();
    (url, apps, secrets)
}

pub(crate) fn verify_clean(url: &str) -> String {
    let (status, stdout, stderr) = run_wallet(&["verify", "--db", url]);
    assert!(status.success(), "verify failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("verify: OK"), "{stdout}");
    stdout
}

/// Sends `requests` from `threads` threads at once; each request is
/// `(server address, path, body)`. Returns the answers in request order.
pub(crate) fn at_once(
    requests: Vec<(String, String, Value)>,
    threads: usize,
    key: Option<&str>,
) -> Vec<ApiResponse> {
    let requests = Arc::new(requests);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let requests = Arc::clone(&requests);
            let next = Arc::clone(&next);
            let start = Arc::clone(&start);
            let key = key.map(str::to_owned);
            std::thread::spawn(move || {
                let client = client_with_key(key.as_deref());
                start.wait();
                let mut answers = Vec::new();
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some((address, path, body)) = requests.get(index) else {
                        break;
                    };
                    let answer = send(client.post(format!("{address}{path}")).json(body));
                    answers.push((index, answer));
                }
                answers
            })
        })
        .collect();
    let mut answers: Vec<(usize, ApiResponse)> = handles
        .into_iter()
        .flat_map(|handle| handle.join().expect("a client thread"))
        .collect();
    answers.sort_by_key(|(index, _)| *index);
    answers.into_iter().map(|(_, answer)| answer).collect()
}

pub(crate) fn statuses(answers: &[ApiResponse]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        let label = if answer.status < 300 {
            answer.status.to_string()
        } else {
            format!("{} {}", answer.status, answer.error_code())
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
}

/// Goal: two instances serve one ledger as one server does: what one
/// writes the other reads at once (balances, history, the transaction, a
/// hold), a hold made on one is captured on the other, a reversal on the
/// other, and the ledger audits clean.
#[test]
fn two_instances_serve_one_ledger() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "one_ledger", 2, &[]);
    let (a, b) = (&apps[0], &apps[1]);
    assert_eq!(a.balance("user_alice", "GOLD"), 1000, "seeded once");
    assert_eq!(b.balance("user_alice", "GOLD"), 1000);
    let spent = a.post_spend("user_alice", "GOLD", 30, "spend-1");
    assert_eq!(spent.status, 201, "{:?}", spent.body);
    let id = spent.data()["transaction"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b.balance("user_alice", "GOLD"), 970);
    let replayed = b.post_spend("user_alice", "GOLD", 30, "spend-1");
    assert_eq!(replayed.status, 200, "{:?}", replayed.body);
    assert_eq!(
        replayed.data(),
        spent.data(),
        "a replay on the other instance"
    );
    let detail = b.get(&format!("/transactions/{id}"));
    assert_eq!(detail.data()["amount"], 30);
    let history = b.get("/wallets/user_alice/transactions?asset=GOLD&limit=1");
    assert_eq!(history.data()["items"][0]["id"], id.as_str());

    let held = a.post(
        "/wallets/user_alice/holds",
        &json!({"asset": "GOLD", "amount": 100, "idempotencyKey": "hold-1"}),
    );
    assert_eq!(held.status, 201, "{:?}", held.body);
    let hold = held.data()["hold"]["id"].as_str().unwrap().to_owned();
    let balance = b.get("/wallets/user_alice/balance");
    let gold = balance.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .unwrap()
        .clone();
    assert_eq!(
        (gold["held"].clone(), gold["available"].clone()),
        (json!(100), json!(870))
    );
    let captured = b.post(
        &format!("/holds/{hold}/capture"),
        &json!({"idempotencyKey": "capture-1", "amount": 60, "to": "user_bob"}),
    );
    assert_eq!(captured.status, 201, "{:?}", captured.body);
    assert_eq!(captured.data()["balance"], 910);
    assert_eq!(a.balance("user_bob", "GOLD"), 560);
    let reversed = a.post(
        &format!("/transactions/{id}/reverse"),
        &json!({"idempotencyKey": "refund-1", "amount": 10}),
    );
    assert_eq!(reversed.status, 201, "{:?}", reversed.body);
    assert_eq!(b.balance("user_alice", "GOLD"), 920);
    let supply = b.get("/assets/GOLD/supply");
    assert_eq!(supply.data()["outstanding"], 1500 - 30 + 10);
    assert_eq!(supply.data()["held"], 0);
    verify_clean(&url);
    // The URL carries a password; no instance ever logs it.
    for app in &apps {
        let logs = app.logs().join("\n");
        assert!(
            logs.contains("wallet:***@"),
            "the database is named: {logs}"
        );
        assert!(!logs.contains(crate::postgres::PASSWORD), "{logs}");
    }
}

/// Goal: 200 spends of 10 at once from a user holding 1000, spread over
/// three instances: exactly 100 succeed, the rest are INSUFFICIENT_FUNDS,
/// nothing else; the balance is 0 on every instance and the ledger audits
/// clean.
#[test]
fn concurrent_spends_over_three_instances_never_overdraw() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "overdraw", 3, &[]);
    let topup = apps[0].post_topup("whale", "GOLD", 1000, "whale-topup");
    assert_eq!(topup.status, 201, "{:?}", topup.body);
    let requests = (0..200)
        .map(|n| {
            (
                apps[n % 3].address.clone(),
                "/wallets/whale/spend".to_owned(),
                json!({"asset": "GOLD", "amount": 10, "idempotencyKey": format!("spend-{n}")}),
            )
        })
        .collect();
    let answers = at_once(requests, 24, None);
    let counts = statuses(&answers);
    assert_eq!(
        counts,
        BTreeMap::from([
            ("201".to_owned(), 100),
            ("422 INSUFFICIENT_FUNDS".to_owned(), 100)
        ]),
    );
    for app in &apps {
        assert_eq!(app.balance("whale", "GOLD"), 0);
    }
    verify_clean(&url);
}

/// Goal: 20 requests with one idempotency key at once, over two
/// instances: one entry, and 20 answers naming the same transaction (the
/// first 201, the rest replays), never a 500.
#[test]
fn one_key_on_two_instances_at_once_is_applied_once() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "one_key", 2, &[]);
    let before = apps[0].entry_count();
    let requests = (0..20)
        .map(|n| {
            (
                apps[n % 2].address.clone(),
                "/wallets/user_alice/spend".to_owned(),
                json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "the-one-key"}),
            )
        })
        .collect();
    let answers = at_once(requests, 20, None);
    let counts = statuses(&answers);
    assert_eq!(counts.get("201"), Some(&1), "{counts:?}");
    assert_eq!(counts.get("200"), Some(&19), "{counts:?}");
    let ids: HashSet<&str> = answers
        .iter()
        .map(|answer| answer.data()["transaction"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(apps[0].entry_count(), before + 1);
    assert_eq!(apps[1].balance("user_alice", "GOLD"), 995);
    verify_clean(&url);
}

/// Goal: transfers from A to B on one instance and from B to A on the
/// other, at once: every one succeeds (a deadlock between instances is
/// retried, never shown), and the two balances end where they began.
#[test]
fn transfers_both_ways_across_instances_never_reach_a_caller_as_a_deadlock() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "both_ways", 2, &[]);
    for user in ["ann", "ben"] {
        let topup = apps[0].post_topup(user, "GOLD", 1000, &format!("{user}-topup"));
        assert_eq!(topup.status, 201, "{:?}", topup.body);
    }
    let requests = (0..200)
        .map(|n| {
            let (from, to) = if n % 2 == 0 {
                ("ann", "ben")
            } else {
                ("ben", "ann")
            };
            (
                apps[n % 2].address.clone(),
                format!("/wallets/{from}/transfer"),
                json!({"to": to, "asset": "GOLD", "amount": 3, "idempotencyKey": format!("t-{n}")}),
            )
        })
        .collect();
    let answers = at_once(requests, 16, None);
    assert_eq!(
        statuses(&answers),
        BTreeMap::from([("201".to_owned(), 200)])
    );
    assert_eq!(apps[1].balance("ann", "GOLD"), 1000);
    assert_eq!(apps[0].balance("ben", "GOLD"), 1000);
    verify_clean(&url);
}

/// Goal: a hold captured on one instance and voided on the other at the
/// same moment closes once: one wins, the other is HOLD_NOT_ACTIVE, and
/// the hold shows the winner's status.
#[test]
fn a_hold_captured_on_one_instance_and_voided_on_another_closes_once() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "hold_race", 2, &[]);
    for round in 0..10 {
        let held = apps[0].post(
            "/wallets/user_alice/holds",
            &json!({"asset": "GOLD", "amount": 10, "idempotencyKey": format!("hold-{round}")}),
        );
        assert_eq!(held.status, 201, "{:?}", held.body);
        let hold = held.data()["hold"]["id"].as_str().unwrap().to_owned();
        let answers = at_once(
            vec![
                (
                    apps[0].address.clone(),
                    format!("/holds/{hold}/capture"),
                    json!({"idempotencyKey": format!("capture-{round}")}),
                ),
                (
                    apps[1].address.clone(),
                    format!("/holds/{hold}/void"),
                    json!({"idempotencyKey": format!("void-{round}")}),
                ),
            ],
            2,
            None,
        );
        let won: Vec<&ApiResponse> = answers.iter().filter(|a| a.status < 300).collect();
        let lost: Vec<&ApiResponse> = answers.iter().filter(|a| a.status >= 300).collect();
        assert_eq!(
            (won.len(), lost.len()),
            (1, 1),
            "round {round}: {answers:?}"
        );
        assert_eq!(lost[0].status, 409);
        assert_eq!(lost[0].error_code(), "HOLD_NOT_ACTIVE");
        let status = apps[1].get(&format!("/holds/{hold}")).data()["status"].clone();
        assert_eq!(status, won[0].data()["hold"]["status"], "round {round}");
    }
    verify_clean(&url);
}

/// Waits up to `limit` for `condition`; returns how long it took.
pub(crate) fn within(limit: Duration, mut condition: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if condition() {
            return Some(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Goal: a key created on one instance is accepted by the other, and a key
/// revoked on the other is refused by the first, each within a second.
#[test]
fn keys_created_or_revoked_on_one_instance_are_in_force_on_all_within_a_second() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (_url, apps, _) = instances(&cluster, "keys", 2, &[("operator", "admin")]);
    let created = apps[0].post("/keys", &json!({"name": "game", "scopes": ["read"]}));
    assert_eq!(created.status, 201, "{:?}", created.body);
    let secret = created.data()["secret"].as_str().unwrap().to_owned();
    let game = client_with_key(Some(&secret));
    let balance_on = |app: &TestApp| send(game.get(app.url("/wallets/user_alice/balance"))).status;
    let accepted = within(Duration::from_secs(1), || balance_on(&apps[1]) == 200);
    assert!(
        accepted.is_some(),
        "the new key never worked on the other instance"
    );
    let revoked = apps[1].post("/keys/game/revoke", &json!({}));
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    let refused = within(Duration::from_secs(1), || balance_on(&apps[0]) == 401);
    assert!(
        refused.is_some(),
        "the revoked key still works on the other instance"
    );
}

/// Goal: while both instances write, a client following the event feed on
/// one sees every instance's writes within a second, each once, in the
/// feed's order; a history walked newest first while the writes go on
/// matches, entry for entry, the same history read once they stopped; and
/// the ledger audits clean.
#[test]
fn pages_of_the_feed_and_of_history_neither_repeat_nor_skip_while_every_instance_writes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "paging", 2, &[]);
    let addresses: Vec<String> = apps.iter().map(|app| app.address.clone()).collect();
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let address = addresses[writer % 2].clone();
            let writing = Arc::clone(&writing);
            std::thread::spawn(move || {
                let client = client_with_key(None);
                let mut written = Vec::new();
                let mut n = 0;
                while writing.load(std::sync::atomic::Ordering::SeqCst) {
                    // Two users each time, in two assets: entries of one
                    // user land in accounts that commit in any order.
                    let (user, asset) = [("pager", "GOLD"), ("pager", "DIAMOND"), ("other", "GOLD")]
                        [n % 3];
                    let answer = send(client.post(format!("{address}/wallets/{user}/topup")).json(
                        &json!({"asset": asset, "amount": 1, "idempotencyKey": format!("w{writer}-{n}")}),
                    ));
                    assert_eq!(answer.status, 201, "{:?}", answer.body);
                    let id = answer.data()["transaction"]["id"].as_str().unwrap().to_owned();
                    written.push((user, id));
                    n += 1;
                }
                written
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let reader = client_with_key(None);
    // The history walk, newest first, a small page at a time.
    let mut walked: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/wallets/pager/transactions?limit=7&cursor={cursor}"),
            None => "/wallets/pager/transactions?limit=7".to_owned(),
        };
        let page = send(reader.get(format!("{}{path}", addresses[1])));
        let data = page.data();
        walked.extend(
            data["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match data["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The feed, followed from its start on the other instance.
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = 0_i64;
    // One page of the feed; how many events it held.
    let follow = |after: &mut i64, seen: &mut Vec<(i64, String)>| -> usize {
        let page = send(reader.get(format!("{}/events?after={after}&limit=50", addresses[0])));
        let items = page.data()["items"].as_array().unwrap().clone();
        for event in &items {
            let id: i64 = event["id"].as_str().unwrap().parse().unwrap();
            assert!(id > *after, "event {id} came after {after}");
            *after = id;
            if event["type"] == "transaction.created" {
                seen.push((id, event["data"]["id"].as_str().unwrap().to_owned()));
            }
        }
        items.len()
    };
    let following_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < following_until {
        follow(&mut after, &mut seen);
        std::thread::sleep(Duration::from_millis(30));
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let written: Vec<(&str, String)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("a writer"))
        .collect();
    // Every write is in the feed soon after the last. Each try reads the
    // feed to its end: a backlog of hundreds of events at 50 a page must
    // not read as a gap on a loaded machine (this once failed with a 1 s
    // limit and one page a try).
    let caught_up = within(Duration::from_secs(5), || {
        while follow(&mut after, &mut seen) == 50 {}
        let in_feed: HashSet<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
        written.iter().all(|(_, id)| in_feed.contains(id.as_str()))
    });
    assert!(caught_up.is_some(), "the feed missed writes");
    // Each entry once per user it touches: a top-up touches one user.
    let mut in_feed: Vec<&str> = seen.iter().map(|(_, id)| id.as_str()).collect();
    in_feed.sort_unstable();
    let before_dedup = in_feed.len();
    in_feed.dedup();
    assert_eq!(in_feed.len(), before_dedup, "the feed repeated an event");
    // The history as it stands now, from where the walk began down, is
    // what the walk saw.
    let mut now: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/wallets/pager/transactions?limit=200&cursor={cursor}"),
            None => "/wallets/pager/transactions?limit=200".to_owned(),
        };
        let page = send(reader.get(format!("{}{path}", addresses[0])));
        let data = page.data();
        now.extend(
            data["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match data["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert!(!walked.is_empty());
    let top = now
        .iter()
        .position(|id| *id == walked[0])
        .expect("the walk's first entry is in the history");
    assert_eq!(
        now[top..],
        walked[..],
        "the walk skipped or repeated an entry"
    );
    let pager_written: HashSet<&str> = written
        .iter()
        .filter(|(user, _)| *user == "pager")
        .map(|(_, id)| id.as_str())
        .collect();
    let pager_now: HashSet<&str> = now.iter().map(String::as_str).collect();
    assert_eq!(pager_now, pager_written, "the history is every write, once");
    assert_eq!(now.len(), pager_written.len());
    verify_clean(&url);
}

/// Goal: under load from four clients, one instance is killed with
/// SIGKILL, then PostgreSQL itself crashes (stopped `-m immediate`) and
/// comes back. Every write that was acknowledged is in the ledger; every
/// write that was not, sent again with its key, is applied once or
/// replayed (never half there); the surviving instance answers again
/// without a restart (health 200, writes 201); `verify` passes.
#[test]
fn killing_an_instance_and_crashing_postgresql_under_load_loses_no_acknowledged_write() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, mut apps, _) = instances(&cluster, "crashes", 2, &[]);
    let survivor = apps.pop().unwrap();
    let doomed = apps.pop().unwrap();
    let addresses = [doomed.address.clone(), survivor.address.clone()];
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let addresses = addresses.clone();
            let writing = Arc::clone(&writing);
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .unwrap();
                // (key, user, transaction id once acknowledged)
                let mut sent: Vec<(String, String, Option<String>)> = Vec::new();
                let mut n = 0;
                while writing.load(std::sync::atomic::Ordering::SeqCst) {
                    let key = format!("w{writer}-{n}");
                    let user = format!("u{}", n % 7);
                    let address = &addresses[(writer + n) % 2];
                    let answer = client
                        .post(format!("{address}/wallets/{user}/topup"))
                        .json(&json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key}))
                        .send()
                        .ok()
                        .filter(|response| response.status().as_u16() == 201)
                        .and_then(|response| response.json::<Value>().ok());
                    let id = answer.map(|body| {
                        body["data"]["transaction"]["id"]
                            .as_str()
                            .unwrap()
                            .to_owned()
                    });
                    if id.is_none() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    sent.push((key, user, id));
                    n += 1;
                }
                sent
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    doomed.kill();
    std::thread::sleep(Duration::from_millis(800));
    cluster.crash_and_restart(Duration::from_millis(500));
    // The survivor reconnects by itself.
    let healthy = within(Duration::from_secs(10), || {
        survivor
            .client
            .get(survivor.url("/health"))
            .send()
            .is_ok_and(|response| response.status().as_u16() == 200)
    });
    assert!(
        healthy.is_some(),
        "the surviving instance never became healthy"
    );
    std::thread::sleep(Duration::from_millis(800));
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    let sent: Vec<(String, String, Option<String>)> = writers
        .into_iter()
        .flat_map(|writer| writer.join().expect("a writer"))
        .collect();
    let acknowledged = sent.iter().filter(|(_, _, id)| id.is_some()).count();
    assert!(
        acknowledged > 20,
        "too little load: {acknowledged} acknowledged"
    );
    assert!(
        acknowledged < sent.len(),
        "nothing failed: the crashes came too late"
    );
    for (key, user, id) in &sent {
        let again = survivor.post(
            &format!("/wallets/{user}/topup"),
            &json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key}),
        );
        match id {
            // Acknowledged: it is there, and its key replays it.
            Some(id) => {
                assert_eq!(again.status, 200, "{key}: {:?}", again.body);
                assert_eq!(again.data()["transaction"]["id"], id.as_str(), "{key}");
            }
            // Not acknowledged: applied then (replayed now) or not (now).
            None => assert!(matches!(again.status, 200 | 201), "{key}: {:?}", again.body),
        }
    }
    let total: i64 = (0..7)
        .map(|n| survivor.balance(&format!("u{n}"), "GOLD"))
        .sum();
    assert_eq!(total, sent.len() as i64, "one GOLD per key, each once");
    verify_clean(&url);
}

/// Goal: while the database is down, the server answers at once instead
/// of hanging: health 503, a write `503 DATABASE_UNAVAILABLE` with
/// `Retry-After`, a read 503; once the database is back, it serves again
/// by itself (no restart), and the write retried with its key is applied
/// once.
#[test]
fn a_database_that_goes_away_is_503_with_retry_after_and_the_server_recovers_by_itself() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "outage", 1, &[]);
    let app = &apps[0];
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    cluster.crash();
    let started = Instant::now();
    let health = app.get("/health");
    assert_eq!(health.status, 503, "{:?}", health.body);
    let write = app.post_spend("user_alice", "GOLD", 10, "during-outage");
    assert_eq!(write.status, 503, "{:?}", write.body);
    assert_eq!(write.error_code(), "DATABASE_UNAVAILABLE");
    assert!(write.header("retry-after").is_some(), "{:?}", write.headers);
    let read = app.get("/wallets/user_alice/balance");
    assert_eq!(read.status, 503, "{:?}", read.body);
    assert_eq!(read.error_code(), "DATABASE_UNAVAILABLE");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "answered within the connection time limits: {:?}",
        started.elapsed()
    );
    cluster.start_again();
    let back = within(Duration::from_secs(10), || {
        app.client
            .get(app.url("/health"))
            .send()
            .is_ok_and(|response| response.status().as_u16() == 200)
    });
    assert!(back.is_some(), "the server never served again");
    let retried = app.post_spend("user_alice", "GOLD", 10, "during-outage");
    assert_eq!(retried.status, 201, "{:?}", retried.body);
    assert_eq!(app.balance("user_alice", "GOLD"), 990);
    verify_clean(&url);
}

/// Goal: while two instances write top-ups, bonuses and spends at once
/// (each on its own connection, so on its own rows of the asset's totals),
/// the supply at an instant before them answers the same on both, every
/// time; afterwards, at the time of every entry, `?at=` answers what the
/// entries made by then add up to (the sums over the asset's shards, each
/// at its newest row by then), and the ledger audits clean.
#[test]
fn the_supply_at_an_instant_holds_while_every_instance_writes() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let (url, apps, _) = instances(&cluster, "supply_at", 2, &[]);
    let first = apps[0].post_topup("early", "GOLD", 10, "early-topup");
    assert_eq!(first.status, 201, "{:?}", first.body);
    let before = first.data()["transaction"]["createdAt"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    std::thread::sleep(Duration::from_millis(5));
    let then = apps[1].get(&format!("/assets/GOLD/supply?at={before}"));
    assert_eq!(then.status, 200, "{:?}", then.body);
    let then = then.data().clone();

    let requests: Vec<(String, String, Value)> = (0..90)
        .map(|n| {
            let user = format!("user-{}", n % 6);
            let (path, amount) = match n % 3 {
                0 => (format!("/wallets/{user}/topup"), 20),
                1 => (format!("/wallets/{user}/bonus"), 7),
                _ => (format!("/wallets/{user}/spend"), 5),
            };
            (
                apps[n % 2].address.clone(),
                path,
                json!({"asset": "GOLD", "amount": amount, "idempotencyKey": format!("w-{n}")}),
            )
        })
        .collect();
    let writing = std::thread::spawn(move || at_once(requests, 6, None));
    while !writing.is_finished() {
        for app in &apps {
            let answer = app.get(&format!("/assets/GOLD/supply?at={before}"));
            assert_eq!(answer.status, 200, "{:?}", answer.body);
            assert_eq!(answer.data(), &then, "the past moved while instances wrote");
        }
    }
    let answers = writing.join().unwrap();
    let counts = statuses(&answers);
    assert_eq!(counts.values().sum::<usize>(), 90, "{counts:?}");
    assert!(
        // A spend before the user's first credit finds no wallet.
        counts.keys().all(|status| {
            status == "201" || status.contains("INSUFFICIENT") || status.contains("NOT_FOUND")
        }),
        "{counts:?}"
    );
    // Each entry's time, and what the entries made by then add up to (an
    // entry counts from its history row's time, which a clock behind
    // another instance's may put a little after the entry's own).
    let times = cluster.value(
        "supply_at",
        "SELECT string_agg(created_at::text || ' ' ||
                           to_char(to_timestamp(created_at / 1000.0) AT TIME ZONE 'UTC',
                                   'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), ',' ORDER BY created_at)
           FROM (SELECT DISTINCT created_at FROM ledger_entries) s",
    );
    for time in times.split(',') {
        let (ms, iso) = time.split_once(' ').unwrap();
        let expected = cluster.value(
            "supply_at",
            &format!(
                "SELECT coalesce(sum(CASE WHEN e.debit_account_id = t.id THEN e.amount
                                          WHEN e.credit_account_id = t.id THEN -e.amount
                                          ELSE 0 END), 0)
                        || ' ' || coalesce(sum(CASE WHEN e.debit_account_id = t.id
                                                    THEN wallet_parts_paid(e.parts)
                                                    WHEN e.credit_account_id = t.id
                                                    THEN -wallet_parts_paid(e.parts)
                                                    ELSE 0 END), 0)
                        || ' ' || coalesce(sum(e.amount) FILTER (WHERE e.kind = 'TOPUP'), 0)
                        || ' ' || coalesce(sum(e.amount) FILTER (WHERE e.kind = 'BONUS'), 0)
                        || ' ' || coalesce(sum(e.amount) FILTER (WHERE e.kind = 'SPEND'), 0)
                        || ' ' || coalesce(sum(e.amount) FILTER (WHERE e.kind = 'REVERSAL'), 0)
                   FROM ledger_entries e
                   JOIN asset_types a ON a.id = e.asset_type_id AND a.symbol = 'GOLD'
                   JOIN accounts t ON t.asset_type_id = a.id AND t.owner_type = 'SYSTEM'
                   LEFT JOIN supply_history h ON h.entry_seq = e.seq
                  WHERE coalesce(h.created_at, e.created_at) <= {ms}"
            ),
        );
        let answer = apps[0].get(&format!("/assets/GOLD/supply?at={iso}"));
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        let data = answer.data();
        let answered = format!(
            "{} {} {} {} {} {}",
            data["outstanding"],
            data["paid"],
            data["issued"]["TOPUP"],
            data["issued"]["BONUS"],
            data["spent"],
            data["reversed"]
        );
        assert_eq!(answered, expected, "at {iso}: {data}");
    }
    // Now: the live figures.
    let live = apps[1].get("/assets/GOLD/supply");
    let last = times.rsplit(',').next().unwrap().split_once(' ').unwrap().1;
    let answer = apps[1].get(&format!("/assets/GOLD/supply?at={last}"));
    assert_eq!(answer.data()["outstanding"], live.data()["outstanding"]);
    assert_eq!(answer.data()["paid"], live.data()["paid"]);
    drop(apps);
    verify_clean(&url);
}
