//! The findings of an attack on the newer routes (event streams, batches,
//! the history filters), each as the hostile client did it, on the real
//! binary: a revoked key's open stream, a key repeated inside a nested
//! object, `HEAD` on a stream, a cursor past the feed's end (in
//! `events.rs`), and empty query parameters.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{client_with_key, create_key, post_text, run_wallet, send, TestApp};

/// What a stream reader saw: the idempotency keys of the events it was
/// sent, then whether the server ended the stream.
enum Seen {
    Event(String),
    Ended,
}

/// Opens `GET /events` as a stream with `key` from the feed's end, and
/// reads it on a thread of its own, reporting each event and its end.
fn follow_stream(app: &TestApp, key: Option<&str>) -> mpsc::Receiver<Seen> {
    let page = send(client_with_key(key).get(app.url("/events?limit=1000")));
    assert_eq!(page.status, 200, "{:?}", page.body);
    let end = page.data()["nextCursor"].as_str().unwrap().to_owned();
    let response = client_with_key(key)
        .get(app.url("/events"))
        .header("accept", "text/event-stream")
        .header("last-event-id", end)
        .send()
        .expect("the stream opens");
    assert_eq!(response.status().as_u16(), 200);
    let (seen, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(response);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = seen.send(Seen::Ended);
                    return;
                }
                Ok(_) => {}
            }
            if let Some(data) = line.strip_prefix("data: ") {
                let event: Value = serde_json::from_str(data).expect("data is JSON");
                let key = event["data"]["idempotencyKey"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if seen.send(Seen::Event(key)).is_err() {
                    return;
                }
            }
        }
    });
    receiver
}

/// Waits up to `within` for the stream to end, failing on any event seen
/// first that `allowed` does not accept.
fn expect_end(stream: &mpsc::Receiver<Seen>, within: Duration, allowed: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match stream.recv_timeout(left) {
            Ok(Seen::Ended) => return,
            Ok(Seen::Event(key)) => assert!(allowed(&key), "the stream delivered {key:?}"),
            Err(_) => panic!("the stream was still open {within:?} later"),
        }
    }
}

/// Finding 1: a `read` key's open stream went on delivering every entry
/// for as long as it stayed open after the key was revoked. Now the stream
/// ends once the server knows of the revocation, and delivers nothing
/// written after it; the other key's stream goes on.
#[test]
fn a_revoked_keys_open_stream_ends_and_delivers_nothing_more() {
    let (app, keys) = TestApp::spawn_with_keys(
        &[("dashboard", "read"), ("other", "read"), ("ops", "admin")],
        &[],
    );
    let (dashboard, other, ops) = (&keys[0], &keys[1], client_with_key(Some(&keys[2])));
    let revoked_stream = follow_stream(&app, Some(dashboard));
    let kept_stream = follow_stream(&app, Some(other));
    let top_up = |key: &str| {
        let response = send(
            ops.post(app.url("/wallets/user_bob/topup"))
                .json(&json!({"asset": "GOLD", "amount": 1, "idempotencyKey": key})),
        );
        assert_eq!(response.status, 201, "{:?}", response.body);
    };
    top_up("before-revoke");
    for stream in [&revoked_stream, &kept_stream] {
        match stream.recv_timeout(Duration::from_secs(10)) {
            Ok(Seen::Event(key)) => assert_eq!(key, "before-revoke"),
            _ => panic!("the stream did not deliver the first top-up"),
        }
    }

    let db = app.db_path.to_str().unwrap();
    let (status, stdout, stderr) = run_wallet(&["keys", "revoke", "dashboard", "--db", db]);
    assert!(status.success(), "{stdout}\n{stderr}");
    // The moment the server refuses the key's new requests, its stream is
    // over (API.md: within 100 ms of the revocation; timed by auth.rs).
    let refused_at = loop {
        let probe = send(client_with_key(Some(dashboard)).get(app.url("/events?limit=1")));
        if probe.status == 401 {
            break Instant::now();
        }
        assert_eq!(probe.status, 200);
        std::thread::sleep(Duration::from_millis(10));
    };
    for index in 0..5 {
        top_up(&format!("after-revoke-{index}"));
    }
    expect_end(&revoked_stream, Duration::from_secs(2), |_| false);
    assert!(refused_at.elapsed() < Duration::from_secs(5));

    for index in 0..5 {
        match kept_stream.recv_timeout(Duration::from_secs(10)) {
            Ok(Seen::Event(key)) => assert_eq!(key, format!("after-revoke-{index}")),
            _ => panic!("the other key's stream stopped"),
        }
    }
}

/// Finding 1, the other way a caller loses the feed: an anonymous stream
/// on a service without keys ends once the first key is created, since
/// from then on every caller needs one.
#[test]
fn an_anonymous_stream_ends_when_the_first_key_closes_the_service() {
    let app = TestApp::spawn();
    let stream = follow_stream(&app, None);
    assert_eq!(app.post_topup("user_bob", "GOLD", 1, "open").status, 201);
    match stream.recv_timeout(Duration::from_secs(10)) {
        Ok(Seen::Event(key)) => assert_eq!(key, "open"),
        _ => panic!("the stream did not deliver the top-up"),
    }
    let admin = create_key(&app.db_path, "first", "admin");
    expect_end(&stream, Duration::from_secs(5), |_| false);
    let after = send(client_with_key(Some(&admin)).get(app.url("/events?limit=1")));
    assert_eq!(after.status, 200);
}

/// Finding 2: a key repeated inside a nested object was read with its last
/// value: a batch's bonus of `"amount": 1, "amount": 1000000` credited a
/// million. Every route refuses a repeated key at every depth, and nothing
/// is written.
#[test]
fn a_key_repeated_inside_a_nested_object_is_refused_and_nothing_is_written() {
    let app = TestApp::spawn();
    let entries = app.entry_count();
    let holds_before = app.get("/wallets/user_bob/holds").body;
    let (alice, bob) = (
        app.balance("user_alice", "GOLD"),
        app.balance("user_bob", "GOLD"),
    );
    let cases = [
        (
            "/batch",
            r#"{"idempotencyKey": "dup-1", "operations": [{"type": "bonus", "userId": "user_bob", "asset": "GOLD", "amount": 1, "amount": 1000000}]}"#,
        ),
        (
            "/batch",
            r#"{"idempotencyKey": "dup-2", "operations": [{"type": "transfer", "userId": "user_bob", "userId": "user_alice", "asset": "GOLD", "amount": 5, "to": "user_alice", "to": "user_bob"}]}"#,
        ),
        (
            "/wallets/user_bob/topup",
            r#"{"idempotencyKey": "dup-3", "asset": "GOLD", "amount": 5, "metadata": {"a": "1", "a": "2"}}"#,
        ),
        (
            "/wallets/user_alice/transfer",
            r#"{"idempotencyKey": "dup-4", "asset": "GOLD", "amount": 5, "to": "user_bob", "metadata": {"order": "1", "note": "x", "order": "2"}}"#,
        ),
        (
            "/wallets/user_bob/holds",
            r#"{"idempotencyKey": "dup-5", "asset": "GOLD", "amount": 5, "metadata": {"k": "1", "k": "1"}}"#,
        ),
    ];
    for (path, body) in cases {
        let refused = post_text(&app, path, body);
        assert_eq!(refused.status, 400, "{path} {body}: {:?}", refused.body);
        assert_eq!(refused.error_code(), "INVALID_JSON", "{body}");
        let message = refused.body["error"]["message"].as_str().unwrap();
        assert!(message.contains("twice"), "{message}");
    }
    assert_eq!(app.entry_count(), entries, "a refused body wrote an entry");
    assert_eq!(app.balance("user_alice", "GOLD"), alice);
    assert_eq!(app.balance("user_bob", "GOLD"), bob);
    assert_eq!(app.get("/wallets/user_bob/holds").body, holds_before);

    // The same keys, each once, are accepted: the check is on repetition.
    let once = post_text(
        &app,
        "/batch",
        r#"{"idempotencyKey": "dup-1", "operations": [{"type": "bonus", "userId": "user_bob", "asset": "GOLD", "amount": 1, "metadata": {"a": "1", "b": "1"}}]}"#,
    );
    assert_eq!(once.status, 201, "{:?}", once.body);
    assert_eq!(app.balance("user_bob", "GOLD"), bob + 1);
}

/// Reads one HTTP/1.1 response head from `stream` (up to the blank line),
/// and the body `Content-Length` announces; returns the head.
fn read_answer(stream: &mut TcpStream, has_body: bool) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let read = stream.read(&mut byte).expect("the answer arrives");
        assert_eq!(read, 1, "the connection closed mid-head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    if has_body {
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .expect("a Content-Length");
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body).unwrap();
    }
    head
}

fn open_streams(app: &TestApp) -> f64 {
    let text = reqwest::blocking::get(app.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("wallet_event_streams_open "))
        .expect("the gauge")
        .parse()
        .unwrap()
}

/// Finding 3: `HEAD /events` with `Accept: text/event-stream` sent the head
/// and then held the connection (the next request on it got no answer) and
/// a stream's place: 100 of them took every place. Now a HEAD gets the
/// stream's head and no body, its connection answers the next request, and
/// no place is taken, however many are sent and kept open.
#[test]
fn head_on_a_stream_answers_the_head_and_holds_no_stream() {
    let app = TestApp::spawn();
    let address = app.address.trim_start_matches("http://").to_owned();
    let head_request =
        b"HEAD /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n".as_slice();
    let mut kept = Vec::new();
    for _ in 0..120 {
        let mut connection = TcpStream::connect(&address).unwrap();
        connection
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        connection.write_all(head_request).unwrap();
        let head = read_answer(&mut connection, false);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/event-stream"),
            "{head}"
        );
        kept.push(connection);
    }
    // Each connection still answers, with the next request's answer.
    for connection in kept.iter_mut().take(10) {
        connection
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let head = read_answer(connection, true);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    }
    assert_eq!(open_streams(&app), 0.0);
    let stream = reqwest::blocking::Client::new()
        .get(app.url("/events"))
        .header("accept", "text/event-stream")
        .send()
        .unwrap();
    assert_eq!(stream.status().as_u16(), 200, "a stream's place was taken");
}

/// Finding 5: `?at=` with no value answered the live balance, and an empty
/// filter read as no filter. Every parameter that means something is
/// refused when empty, naming it.
#[test]
fn an_empty_query_parameter_is_refused_naming_it() {
    let app = TestApp::spawn();
    for (path, field) in [
        ("/wallets/user_alice/balance?at=", "at"),
        ("/wallets/user_alice/transactions?asset=", "asset"),
        ("/wallets/user_alice/transactions?type=", "type"),
        (
            "/wallets/user_alice/transactions?referenceId=",
            "referenceId",
        ),
        ("/wallets/user_alice/transactions?cursor=", "cursor"),
        ("/wallets/user_alice/transactions?limit=", "limit"),
        ("/wallets/user_alice/holds?status=", "status"),
        ("/wallets/user_alice/holds?asset=", "asset"),
        ("/wallets/user_alice/holds?cursor=", "cursor"),
        ("/wallets/user_alice/holds?limit=", "limit"),
        ("/events?after=", "after"),
        ("/events?limit=", "limit"),
    ] {
        let refused = app.get(path);
        assert_eq!(refused.status, 400, "{path}: {:?}", refused.body);
        assert_eq!(refused.error_code(), "VALIDATION_ERROR", "{path}");
        assert_eq!(refused.invalid_fields(), vec![field.to_owned()], "{path}");
    }
    // Several empty at once: each named.
    let several = app.get("/wallets/user_alice/transactions?asset=&type=&limit=&cursor=");
    assert_eq!(
        several.invalid_fields(),
        vec!["asset", "type", "limit", "cursor"]
    );
    // Left out, they are not given: the same routes answer.
    for path in [
        "/wallets/user_alice/balance",
        "/wallets/user_alice/transactions",
        "/wallets/user_alice/holds",
        "/events",
    ] {
        assert_eq!(app.get(path).status, 200, "{path}");
    }
}
