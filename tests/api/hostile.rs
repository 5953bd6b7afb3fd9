//! Hostile input over HTTP: malformed, deeply nested, wrong-typed and
//! duplicate-key JSON, huge headers, invalid UTF-8 in the body, path and
//! query, path traversal, SQL-looking text in every field, random requests
//! from a property test, and clients that send slowly. Never a 500 or a
//! panic; the envelope every time, except the bare 400/431 of malformed
//! HTTP framing that README documents; nothing written by what is refused.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::crash::{assert_verify_passes, Reply};
use crate::helpers::{post_text, TestApp, SEED_ENTRIES};

/// A response read off the wire by hand.
#[derive(Debug)]
pub(crate) struct RawResponse {
    pub status: u16,
    /// The status line and headers.
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The answer as the crash module reads one, to check its envelope.
    pub fn reply(&self) -> Reply {
        let text = String::from_utf8_lossy(&self.body).into_owned();
        Reply {
            status: self.status,
            replayed: false,
            body: serde_json::from_str(&text).ok(),
            text,
        }
    }

    /// The one exception to the envelope: the HTTP parser's own refusal of
    /// malformed framing, a bare 400 or 431 (README, "API").
    fn is_framing_refusal(&self) -> bool {
        matches!(self.status, 400 | 431) && !self.body.starts_with(b"{")
    }
}

pub(crate) fn host(app: &TestApp) -> &str {
    app.address.trim_start_matches("http://")
}

/// Sends `request` as written on a fresh connection and reads the answer
/// until the server closes it.
fn exchange(app: &TestApp, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(host(app)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    // The server may answer and close before reading all of a large request.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    parse_response(&answer)
}

/// A whole response, as read until the server closed the connection.
pub(crate) fn parse_response(answer: &[u8]) -> RawResponse {
    let split = answer
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no response head: {:?}", String::from_utf8_lossy(answer)));
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    RawResponse {
        status,
        head,
        body: answer[split + 4..].to_vec(),
    }
}

/// A request line and extra header lines, with a body and its length.
fn request(method: &str, target: &[u8], headers: impl AsRef<[u8]>, body: &[u8]) -> Vec<u8> {
    let mut bytes = format!("{method} ").into_bytes();
    bytes.extend_from_slice(target);
    bytes.extend_from_slice(
        format!(
            " HTTP/1.1\r\nHost: wallet\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        )
        .as_bytes(),
    );
    bytes.extend_from_slice(headers.as_ref());
    bytes.extend_from_slice(b"\r\n");
    bytes.extend_from_slice(body);
    bytes
}

pub(crate) fn json_post(target: &[u8], body: &[u8]) -> Vec<u8> {
    request("POST", target, "Content-Type: application/json\r\n", body)
}

/// Not a 500, and the envelope unless it is the documented framing refusal.
fn assert_answered_well(what: &str, response: &RawResponse) {
    assert!(response.status < 500, "{what}: {response:?}");
    if response.is_framing_refusal() {
        return;
    }
    if let Some(problem) = response.reply().envelope_problem() {
        panic!("{what}: {problem}");
    }
}

/// Refused with `status` and `code`, in the envelope.
fn assert_refused(what: &str, response: &RawResponse, status: u16, code: &str) {
    assert_answered_well(what, response);
    let body = response.reply().body.unwrap_or(Value::Null);
    assert_eq!(
        (response.status, body["error"]["code"].as_str()),
        (status, Some(code)),
        "{what}: {body}"
    );
}

#[test]
fn malformed_nested_wrong_typed_and_duplicate_key_json_is_refused_and_writes_nothing() {
    let app = TestApp::spawn();
    let topup = b"/wallets/user_alice/topup";
    let nested = format!("{}{}", "[".repeat(8000), "]".repeat(8000));
    let nested_object = format!(
        r#"{{"asset":"GOLD","amount":1,"idempotencyKey":"n","note":{}1{}}}"#,
        r#"{"a":"#.repeat(2000),
        "}".repeat(2000)
    );
    let invalid_json: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", br#"{"asset":"GOLD","amount":1"#.to_vec()),
        ("trailing comma", br#"{"asset":"GOLD",}"#.to_vec()),
        ("single quotes", b"{'asset':'GOLD'}".to_vec()),
        ("nested arrays", nested.into_bytes()),
        ("nested objects", nested_object.into_bytes()),
        (
            "duplicate key",
            br#"{"asset":"GOLD","amount":1,"amount":1000,"idempotencyKey":"d"}"#.to_vec(),
        ),
        (
            "invalid UTF-8",
            b"{\"asset\":\"GOLD\xff\xfe\",\"amount\":1,\"idempotencyKey\":\"u\"}".to_vec(),
        ),
        (
            "lone surrogate",
            br#"{"asset":"GOLD","amount":1,"idempotencyKey":"s","note":"\udc00"}"#.to_vec(),
        ),
        (
            "NaN",
            br#"{"asset":"GOLD","amount":NaN,"idempotencyKey":"nan"}"#.to_vec(),
        ),
        (
            "a number past u64",
            br#"{"asset":"GOLD","amount":1e400,"idempotencyKey":"big"}"#.to_vec(),
        ),
        ("a NUL byte", b"{\"asset\":\"GOLD\0\"}".to_vec()),
    ];
    for (what, body) in &invalid_json {
        let response = exchange(&app, &json_post(topup, body));
        if response.status == 400
            && response
                .reply()
                .body
                .as_ref()
                .is_some_and(|b| b["error"]["code"] == "VALIDATION_ERROR")
        {
            // 1e400 parses (arbitrary precision) but is no amount.
            assert_refused(what, &response, 400, "VALIDATION_ERROR");
        } else {
            assert_refused(what, &response, 400, "INVALID_JSON");
        }
    }
    let wrong_types = [
        json!({"asset": "GOLD", "amount": "10", "idempotencyKey": "w1"}),
        json!({"asset": "GOLD", "amount": [10], "idempotencyKey": "w2"}),
        json!({"asset": "GOLD", "amount": {"value": 10}, "idempotencyKey": "w3"}),
        json!({"asset": "GOLD", "amount": true, "idempotencyKey": "w4"}),
        json!({"asset": "GOLD", "amount": 10.0, "idempotencyKey": "w5"}),
        json!({"asset": "GOLD", "amount": -1, "idempotencyKey": "w6"}),
        json!({"asset": 7, "amount": 10, "idempotencyKey": "w7"}),
        json!({"asset": ["GOLD"], "amount": 10, "idempotencyKey": "w8"}),
        json!({"asset": "GOLD", "amount": 10, "idempotencyKey": 42}),
        json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "w10", "note": {"a": 1}}),
        json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "w11", "referenceId": 5}),
        json!({"asset": "GOLD", "amount": 10, "idempotencyKey": "w12", "__proto__": {}}),
    ];
    for body in &wrong_types {
        let response = exchange(&app, &json_post(topup, body.to_string().as_bytes()));
        assert_refused(&body.to_string(), &response, 400, "VALIDATION_ERROR");
    }
    // A body past 16 KiB, declared honestly or sent without a length.
    let huge = format!(r#"{{"note":"{}"}}"#, "x".repeat(64 * 1024));
    assert_refused(
        "64 KiB body",
        &exchange(&app, &json_post(topup, huge.as_bytes())),
        413,
        "PAYLOAD_TOO_LARGE",
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

#[test]
fn huge_headers_invalid_utf8_and_path_traversal_are_refused_and_the_server_serves_on() {
    let app = TestApp::spawn();
    let body = br#"{"asset":"GOLD","amount":1,"idempotencyKey":"h"}"#;
    // Past actix-http's 128 KiB buffer for a request head.
    let big_header = format!("X-Padding: {}\r\n", "a".repeat(200 * 1024));
    let many_headers: String = (0..500).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a 200 KiB header",
            request(
                "POST",
                b"/wallets/user_alice/topup",
                format!("Content-Type: application/json\r\n{big_header}"),
                body,
            ),
        ),
        (
            "500 headers",
            request("GET", b"/health", &many_headers, b""),
        ),
        (
            "a 64 KiB idempotency key",
            request(
                "POST",
                b"/wallets/user_alice/topup",
                format!(
                    "Content-Type: application/json\r\nIdempotency-Key: {}\r\n",
                    "k".repeat(64 * 1024)
                ),
                br#"{"asset":"GOLD","amount":1}"#,
            ),
        ),
        (
            "a 100 KiB path",
            request(
                "GET",
                format!("/wallets/{}/balance", "a".repeat(100 * 1024)).as_bytes(),
                "",
                b"",
            ),
        ),
        (
            "raw invalid UTF-8 in the path",
            request("GET", b"/wallets/\xff\xfe/balance", "", b""),
        ),
        (
            "encoded invalid UTF-8 in the path",
            request("GET", b"/wallets/%FF%FE/balance", "", b""),
        ),
        (
            "encoded invalid UTF-8 in a write's path",
            json_post(b"/wallets/%C3%28/topup", body),
        ),
        (
            "invalid UTF-8 in the query",
            request(
                "GET",
                b"/wallets/user_alice/transactions?asset=%FF",
                "",
                b"",
            ),
        ),
        (
            "raw invalid UTF-8 in the query",
            request(
                "GET",
                b"/wallets/user_alice/transactions?type=\xc3\x28",
                "",
                b"",
            ),
        ),
        (
            "invalid UTF-8 in the key header",
            request(
                "POST",
                b"/wallets/user_alice/topup",
                b"Content-Type: application/json\r\nIdempotency-Key: \xff\xfe\r\n",
                br#"{"asset":"GOLD","amount":1}"#,
            ),
        ),
        (
            "invalid UTF-8 in the request id",
            request("GET", b"/health", b"X-Request-Id: \xff\r\n", b""),
        ),
        (
            "traversal",
            request("GET", b"/wallets/../../etc/passwd", "", b""),
        ),
        (
            "encoded traversal",
            request("GET", b"/wallets/..%2F..%2Fetc%2Fpasswd/balance", "", b""),
        ),
        (
            "traversal between users",
            json_post(b"/wallets/user_bob/../user_alice/topup", body),
        ),
        (
            "dot segments",
            request("GET", b"/wallets/./user_alice/./balance", "", b""),
        ),
        (
            "backslashes",
            request("GET", b"/wallets/..\\..\\windows/balance", "", b""),
        ),
        (
            "an absolute URI",
            request(
                "GET",
                b"http://evil.example/wallets/user_alice/balance",
                "",
                b"",
            ),
        ),
        (
            "a NUL in the path",
            request("GET", b"/wallets/user_alice%00/balance", "", b""),
        ),
        (
            "a double slash",
            request("GET", b"//wallets//user_alice//balance", "", b""),
        ),
    ];
    for (what, bytes) in &cases {
        let response = exchange(&app, bytes);
        assert_answered_well(what, &response);
        assert_ne!(response.status, 201, "{what} was applied");
        if what.contains("200 KiB") {
            assert!(response.is_framing_refusal(), "{response:?}");
        }
        assert_eq!(app.get("/health").status, 200, "after {what}");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
    assert_eq!(app.balance("user_bob", "GOLD"), 500);
}

/// Text that would do harm if it were ever spliced into SQL.
const SQL_LOOKING: [&str; 5] = [
    "x' OR '1'='1",
    "'; DROP TABLE ledger_entries; --",
    "\") UNION SELECT * FROM accounts --",
    "1; UPDATE postings SET balance_after = 0",
    "GOLD'--",
];

#[test]
fn sql_looking_text_in_every_field_is_refused_or_stored_verbatim() {
    let app = TestApp::spawn();
    let mut created = 0;
    for (i, sql) in SQL_LOOKING.iter().enumerate() {
        let encoded: String = url_encode(sql);
        // Where the charset forbids it, refused.
        let path = format!("/wallets/{encoded}/balance");
        let response = exchange(&app, &request("GET", path.as_bytes(), "", b""));
        assert_refused("userId", &response, 400, "VALIDATION_ERROR");
        for parameter in ["asset", "type", "limit", "cursor"] {
            let target = format!("/wallets/user_alice/transactions?{parameter}={encoded}");
            let response = exchange(&app, &request("GET", target.as_bytes(), "", b""));
            assert_refused(parameter, &response, 400, "VALIDATION_ERROR");
        }
        let bad_asset = json!({"asset": sql, "amount": 1, "idempotencyKey": format!("sql-a{i}")});
        let response = post_text(&app, "/wallets/user_alice/topup", bad_asset.to_string());
        assert_eq!(response.error_code(), "VALIDATION_ERROR");
        // Where any text is allowed, kept exactly as sent.
        let key: String = sql.chars().filter(|c| *c != ' ').collect();
        let accepted = json!({"asset": "GOLD", "amount": 1, "idempotencyKey": format!("{key}{i}"),
                              "referenceId": sql, "note": sql});
        let response = post_text(&app, "/wallets/user_alice/topup", accepted.to_string());
        assert_eq!(response.status, 201, "{:?}", response.body);
        created += 1;
        let transaction = &response.data()["transaction"];
        assert_eq!(transaction["referenceId"], *sql);
        assert_eq!(transaction["note"], *sql);
        assert_eq!(transaction["idempotencyKey"], format!("{key}{i}"));
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES + created);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000 + created);
    let history = app.get("/wallets/user_alice/transactions?limit=200");
    assert_eq!(
        history.data()["items"][0]["note"],
        SQL_LOOKING[SQL_LOOKING.len() - 1]
    );
    assert_verify_passes(&app.db_path);
}

fn url_encode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Random requests: methods, paths built from the routes' own pieces and
/// hostile ones, header values and bodies of every kind.
fn random_request() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        Just("GET".to_owned()),
        Just("POST".to_owned()),
        Just("PUT".to_owned()),
        Just("DELETE".to_owned()),
        Just("OPTIONS".to_owned()),
        "[A-Z]{1,8}",
    ];
    let segment = prop_oneof![
        Just("wallets".to_owned()),
        Just("user_alice".to_owned()),
        Just("balance".to_owned()),
        Just("transactions".to_owned()),
        Just("topup".to_owned()),
        Just("spend".to_owned()),
        Just("health".to_owned()),
        Just("..".to_owned()),
        Just("%FF".to_owned()),
        Just("%2F".to_owned()),
        "[!-~]{0,12}".prop_map(|s| s.replace(['?', '#', ' '], "")),
        any::<String>().prop_map(|s| url_encode(&s)),
    ];
    let path = proptest::collection::vec(segment, 0..5)
        .prop_map(|segments| format!("/{}", segments.join("/")));
    let query = proptest::option::of("[!-~]{0,40}".prop_map(|s| s.replace(['#', ' '], "")));
    let content_type = prop_oneof![
        Just("application/json"),
        Just("application/json; charset=utf-8"),
        Just("text/plain"),
        Just("application/json; charset=\u{1}"),
    ];
    let body = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        (
            1..100_u64,
            "[!-~]{1,20}",
            proptest::option::of(any::<String>())
        )
            .prop_map(|(amount, key, note)| {
                json!({"asset": "GOLD", "amount": amount, "idempotencyKey": key, "note": note})
                    .to_string()
                    .into_bytes()
            }),
        any::<String>().prop_map(String::into_bytes),
    ];
    let header_value = proptest::option::of(
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(|bytes| {
            bytes
                .into_iter()
                .filter(|b| !matches!(b, b'\r' | b'\n'))
                .collect::<Vec<u8>>()
        }),
    );
    (method, path, query, content_type, header_value, body).prop_map(
        |(method, path, query, content_type, key, body)| {
            let mut target = path.into_bytes();
            if let Some(query) = query {
                target.push(b'?');
                target.extend_from_slice(query.as_bytes());
            }
            let mut bytes = request(
                &method,
                &target,
                format!("Content-Type: {content_type}\r\n"),
                &body,
            );
            if let Some(key) = key {
                // An extra header line with arbitrary bytes, before the blank line.
                let at = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 2;
                let mut line = b"Idempotency-Key: ".to_vec();
                line.extend_from_slice(&key);
                line.extend_from_slice(b"\r\n");
                bytes.splice(at..at, line);
            }
            bytes
        },
    )
}

#[test]
fn random_requests_are_never_a_500_and_are_answered_in_the_envelope() {
    let app = TestApp::spawn();
    let mut runner = TestRunner::new(Config {
        // PROPTEST_CASES=N for a long run, as for the property tests.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|cases| cases.parse().ok())
            .unwrap_or(48),
        failure_persistence: None,
        ..Config::default()
    });
    let created = std::cell::Cell::new(0_i64);
    runner
        .run(&random_request(), |bytes| {
            let response = exchange(&app, &bytes);
            prop_assert!(
                response.status != 500,
                "{:?} got {:?}",
                String::from_utf8_lossy(&bytes),
                response
            );
            if !response.is_framing_refusal() {
                let problem = response.reply().envelope_problem();
                prop_assert!(
                    problem.is_none(),
                    "{:?}: {:?}",
                    String::from_utf8_lossy(&bytes),
                    problem
                );
            }
            created.set(created.get() + i64::from(response.status == 201));
            Ok(())
        })
        .unwrap();
    assert_eq!(app.get("/health").status, 200);
    assert_eq!(app.entry_count(), SEED_ENTRIES + created.get());
    assert_verify_passes(&app.db_path);
}

#[test]
fn slow_clients_hold_no_worker_and_a_stalled_head_is_cut_off() {
    let app = TestApp::spawn();
    // Many connections that stop halfway through the head, and many that
    // send a head and then only part of the body they announced.
    let mut stalled = Vec::new();
    for i in 0..200 {
        let mut stream = TcpStream::connect(host(&app)).unwrap();
        let partial: Vec<u8> = if i % 2 == 0 {
            b"POST /wallets/user_alice/topup HTTP/1.1\r\nHost: wallet\r\nContent-Ty".to_vec()
        } else {
            let mut bytes = json_post(
                b"/wallets/user_alice/topup",
                br#"{"asset":"GOLD","amount":1,"idempotencyKey":"slow"}"#,
            );
            bytes.truncate(bytes.len() - 10);
            bytes
        };
        stream.write_all(&partial).unwrap();
        stalled.push(stream);
    }
    // Others are served meanwhile, reads and writes alike.
    assert_eq!(app.get("/health").status, 200);
    assert_eq!(
        app.post_topup("user_bob", "GOLD", 5, "beside-slow").status,
        201
    );
    assert_eq!(app.balance("user_bob", "GOLD"), 505);

    // A client that sends its head a byte at a time is cut off by the
    // server's request timeout (5 s) well before it finishes.
    let mut trickle = TcpStream::connect(host(&app)).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let head = format!(
        "GET /health HTTP/1.1\r\nHost: wallet\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(400)
    );
    let started = Instant::now();
    let mut cut_off = false;
    for byte in head.bytes() {
        if trickle.write_all(&[byte]).is_err() {
            cut_off = true;
            break;
        }
        let mut answer = [0_u8; 512];
        match trickle.read(&mut answer) {
            Ok(0) => {
                cut_off = true;
                break;
            }
            Ok(read) => {
                let text = String::from_utf8_lossy(&answer[..read]);
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                cut_off = true;
                break;
            }
            Err(_) => {} // Nothing yet: keep trickling.
        }
    }
    assert!(
        cut_off,
        "a head trickled over {:?} was never cut off",
        started.elapsed()
    );
    // The half-sent write was never applied.
    drop(stalled);
    assert_eq!(app.entry_count(), SEED_ENTRIES + 1);
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}
