//! Goal: the findings of an attack on the landed service, each reproduced
//! against the real binary and now answered: a write whose key is revoked
//! while its body trickles in, bodies and heads that never finish, clients
//! that pipeline and never read, idle connections by the thousand, a
//! filtered history page over a long history, the database's files deleted,
//! truncated or doubly served under a running server, and the small ones
//! (query strings, dot user ids, HEAD, 405).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::crash::{assert_all_replay, assert_verify_passes, open_wallets, Workload};
use crate::helpers::{client_with_key, run_wallet, TestApp, SEED_ENTRIES};
use crate::hostile::{host, json_post, parse_response, RawResponse};
use wallet::limits::{
    HTTP_CLIENT_REQUEST_TIMEOUT, HTTP_CONNECTIONS_PER_ADDRESS_MAX, HTTP_REQUEST_TIMEOUT,
    QUERY_PROBLEMS_MAX,
};

/// Reads until the server closes the connection or `timeout` passes; the
/// bytes and whether it was closed.
fn read_until_closed(stream: &mut TcpStream, timeout: Duration) -> (Vec<u8>, bool) {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut answer = Vec::new();
    let mut buffer = [0_u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buffer) {
            Ok(0) => return (answer, true),
            Ok(read) => answer.extend_from_slice(&buffer[..read]),
            Err(error) if matches!(error.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (answer, true),
        }
    }
    (answer, false)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap()
}

/// A connection from the loopback address `source` (127.0.0.2, ...), as
/// from another client machine.
fn connect_from(source: [u8; 4], server: &str) -> std::io::Result<TcpStream> {
    let server: SocketAddr = server.parse().unwrap();
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // Thousands of these take thousands of ports: with SO_REUSEADDR they do
    // not stop another test's server from binding one of them on 0.0.0.0.
    socket.set_reuse_address(true)?;
    let source = SocketAddr::from((source, 0));
    socket.bind(&source.into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    Ok(socket.into())
}

#[test]
fn a_key_revoked_while_its_body_trickles_in_writes_nothing() {
    let (app, secrets) = TestApp::spawn_with_keys(&[("webhook", "grant"), ("ops", "read")], &[]);
    let reader = client_with_key(Some(&secrets[1]));
    let body =
        json!({"asset": "GOLD", "amount": 9_007_199_254_740_991_u64, "idempotencyKey": "parked"})
            .to_string();
    let head = format!(
        "POST /wallets/minter/topup HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        secrets[0],
        body.len()
    );
    // Three writes parked on one byte of body each, as in the finding.
    let mut parked: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut stream = TcpStream::connect(host(&app)).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&body.as_bytes()[..1]).unwrap();
            stream
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let (status, _, stderr) = run_wallet(&[
        "keys",
        "revoke",
        "webhook",
        "--db",
        app.db_path.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stderr}");
    // The running server refuses the key within 100 ms of the revocation.
    std::thread::sleep(Duration::from_millis(500));
    for stream in &mut parked {
        stream.write_all(&body.as_bytes()[1..]).unwrap();
    }
    for stream in &mut parked {
        // The answer, whether or not the connection is then kept open.
        let (answer, _) = read_until_closed(stream, Duration::from_secs(3));
        let response = parse_response(&answer);
        assert_eq!(response.status, 401, "{response:?}");
        assert_eq!(
            response.reply().body.unwrap()["error"]["code"],
            "UNAUTHORIZED"
        );
    }
    let balance = reader
        .get(app.url("/wallets/minter/balance"))
        .send()
        .unwrap();
    assert_eq!(
        balance.status().as_u16(),
        404,
        "minter got no wallet at all"
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES);
    assert_verify_passes(&app.db_path);
}

#[test]
fn a_body_trickled_a_byte_a_second_is_cut_off_at_the_deadline_with_408_and_nothing_written() {
    let app = TestApp::spawn();
    let body = json!({"asset": "GOLD", "amount": 5, "idempotencyKey": "trickle"}).to_string();
    let request = json_post(b"/wallets/user_alice/topup", body.as_bytes());
    let head_end = request.len() - body.len();
    let mut stream = TcpStream::connect(host(&app)).unwrap();
    let started = Instant::now();
    stream.write_all(&request[..head_end]).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(10)))
        .unwrap();
    let mut answer = Vec::new();
    let mut closed = false;
    for byte in body.as_bytes().iter().take(body.len() - 1) {
        if stream.write_all(std::slice::from_ref(byte)).is_err() {
            break;
        }
        let (more, done) = read_until_closed(&mut stream, Duration::from_secs(1));
        answer.extend_from_slice(&more);
        if done {
            closed = true;
            break;
        }
        assert!(
            started.elapsed() < HTTP_REQUEST_TIMEOUT + Duration::from_secs(5),
            "the trickle was never cut off"
        );
    }
    let elapsed = started.elapsed();
    assert!(closed, "the connection was closed");
    assert!(
        elapsed >= HTTP_REQUEST_TIMEOUT - Duration::from_millis(500),
        "not before the deadline: {elapsed:?}"
    );
    let response = parse_response(&answer);
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(
        response.reply().body.unwrap()["error"]["code"],
        "REQUEST_TIMEOUT"
    );
    assert_eq!(app.entry_count(), SEED_ENTRIES, "nothing written");
    assert_eq!(app.balance("user_alice", "GOLD"), 1000);
}

#[test]
fn a_later_request_head_on_a_kept_alive_connection_is_timed_as_the_first_is() {
    let app = TestApp::spawn();
    let mut stream = TcpStream::connect(host(&app)).unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0_u8; 4096];
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let read = stream.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..read]).starts_with("HTTP/1.1 200"));
    // The second head starts, then stalls.
    let started = Instant::now();
    stream.write_all(b"GET /health HTT").unwrap();
    let (answer, closed) = read_until_closed(&mut stream, Duration::from_secs(20));
    assert!(closed, "a stalled head keeps no connection open");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= HTTP_CLIENT_REQUEST_TIMEOUT - Duration::from_millis(500)
            && elapsed < HTTP_REQUEST_TIMEOUT + Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(
        String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 408"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn clients_that_pipeline_and_never_read_cannot_exhaust_memory() {
    let app = TestApp::spawn();
    let pipelined = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(200);
    let before = rss_kib(app.pid());
    let mut streams: Vec<TcpStream> = (0..100)
        .map(|_| {
            let socket =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            // A small receive window, as a client that never reads has.
            socket.set_recv_buffer_size(4096).unwrap();
            let server: SocketAddr = host(&app).parse().unwrap();
            socket.connect(&server.into()).unwrap();
            socket.set_nonblocking(true).unwrap();
            socket.into()
        })
        .collect();
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < until {
        for stream in &mut streams {
            let _ = stream.write(&pipelined);
        }
        peak = peak.max(rss_kib(app.pid()));
        std::thread::sleep(Duration::from_millis(50));
    }
    let health_started = Instant::now();
    let health = app.get("/health");
    let health_took = health_started.elapsed();
    eprintln!(
        "100 pipelining connections that never read: RSS {} MiB before, {} MiB at peak; health in {health_took:?}",
        before / 1024,
        peak / 1024
    );
    assert_eq!(health.status, 200);
    assert!(peak < 300 * 1024, "peak RSS {} MiB", peak / 1024);
    drop(streams);
}

#[test]
fn thousands_of_idle_connections_neither_lock_out_a_new_client_nor_fill_every_slot() {
    let app = TestApp::spawn();
    // 2,200 idle keep-alive connections from one other machine, as in the
    // finding: each asks for /health once, then sits.
    let attacker = [127, 0, 0, 2];
    let rss_before = rss_kib(app.pid());
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..2_200 {
        let mut stream = connect_from(attacker, host(&app)).unwrap();
        stream
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        held.push(stream);
    }
    for stream in &mut held {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buffer = [0_u8; 1024];
        let read = match stream.read(&mut buffer) {
            Ok(read) => read,
            Err(error) => panic!("no answer: {error}"),
        };
        let text = String::from_utf8_lossy(&buffer[..read]);
        if text.starts_with("HTTP/1.1 503") {
            assert!(text.contains("SERVICE_OVERLOADED"), "{text}");
            refused += 1;
        } else {
            assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        }
    }
    assert_eq!(
        refused,
        2_200 - HTTP_CONNECTIONS_PER_ADDRESS_MAX as usize,
        "one address holds at most its share of the slots"
    );
    // A new client is served at once.
    let started = Instant::now();
    let health = app.get("/health");
    let took = started.elapsed();
    let rss_held = rss_kib(app.pid());
    eprintln!(
        "with {} idle connections held ({refused} refused), a new client was served in {took:?}; RSS {} MiB before, {} MiB with them",
        2_200 - refused,
        rss_before / 1024,
        rss_held / 1024
    );
    assert_eq!(health.status, 200);
    assert!(took < Duration::from_secs(5), "{took:?}");
    drop(held);
}

#[test]
fn a_filtered_history_page_does_bounded_work_and_resumes_with_a_cursor() {
    let app = TestApp::spawn();
    // One SPEND, then thousands of TOPUPs above it: the SPEND is deep in
    // the history, where a filtered page used to scan down to it.
    assert_eq!(app.post_topup("deep", "GOLD", 10, "first").status, 201);
    assert_eq!(app.post_spend("deep", "GOLD", 3, "the-spend").status, 201);
    let topups = 4_500;
    std::thread::scope(|scope| {
        for thread in 0..8 {
            let app = &app;
            scope.spawn(move || {
                for i in (thread..topups).step_by(8) {
                    let response = app.post_topup("deep", "GOLD", 1, &format!("top-{i}"));
                    assert_eq!(response.status, 201);
                }
            });
        }
    });
    let mut found = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(cursor) => format!("/wallets/deep/transactions?type=SPEND&cursor={cursor}"),
            None => "/wallets/deep/transactions?type=SPEND".to_owned(),
        };
        let page = app.get(&path);
        assert_eq!(page.status, 200, "{:?}", page.body);
        pages += 1;
        for item in page.data()["items"].as_array().unwrap() {
            assert_eq!(item["type"], "SPEND");
            found.push(item["idempotencyKey"].as_str().unwrap().to_owned());
        }
        match page.data()["nextCursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        assert!(pages < 10, "the cursors lead somewhere");
    }
    assert_eq!(
        found,
        vec!["the-spend".to_owned()],
        "found once, not repeated"
    );
    // Each page stopped after examining at most HISTORY_ROWS_EXAMINED_MAX
    // rows, so reaching the SPEND under 4,500 TOPUPs took several pages.
    assert!(pages >= 3, "{pages} pages");
    // Unfiltered paging is unchanged: full pages.
    let page = app.get("/wallets/deep/transactions?limit=200");
    assert_eq!(page.data()["items"].as_array().unwrap().len(), 200);
}

#[test]
fn a_wal_deleted_under_load_stops_acknowledgement_and_loses_nothing_acknowledged() {
    if !crate::helpers::sqlite_only("a WAL file deleted under the server") {
        return;
    }
    let mut app = TestApp::spawn();
    let users: Vec<String> = (0..8).map(|i| format!("wal_user_{i}")).collect();
    let mut acked = open_wallets(&app, &users);
    let workload = Workload::start(&app.client, &app.address, &users, 8, "deleted");
    workload.wait_for_acks(300, Duration::from_secs(30));
    let wal = app.db_path.with_file_name("wallet.db-wal");
    std::fs::remove_file(&wal).unwrap();
    let status = app
        .wait_for_exit(Duration::from_secs(40))
        .expect("the server stops by itself");
    assert!(!status.success(), "and exits non-zero: {status:?}");
    let tally = workload.finish();
    assert!(tally.bad_envelopes.is_empty(), "{:?}", tally.bad_envelopes);
    let logs = app.logs().join("\n");
    assert!(
        logs.contains("STOPPING: the database files changed"),
        "{logs}"
    );
    acked.extend(tally.acked);
    assert_verify_passes(&app.db_path);
    let restarted = TestApp::spawn_on(&app.db_path);
    assert_all_replay(&restarted, &acked);
    eprintln!(
        "deleted WAL: {} writes acknowledged, every one replays after the restart; {} refused",
        acked.len(),
        tally.refused.len()
    );
}

#[test]
fn a_wal_truncated_under_load_stops_acknowledgement_and_is_never_checkpointed_into_the_database() {
    if !crate::helpers::sqlite_only("a WAL file truncated under the server") {
        return;
    }
    let mut first = TestApp::spawn();
    let users: Vec<String> = (0..8).map(|i| format!("cut_user_{i}")).collect();
    let opened = open_wallets(&first, &users);
    // A clean stop checkpoints: from here the database file itself holds
    // the opening balances, as a ledger that has served a while does.
    let db_path = first.db_path.clone();
    let folder = first.keep_folder();
    assert!(first.terminate().success());
    let mut app = TestApp::spawn_on(&db_path);
    let workload = Workload::start(&app.client, &app.address, &users, 8, "truncated");
    workload.wait_for_acks(300, Duration::from_secs(30));
    let wal = app.db_path.with_file_name("wallet.db-wal");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&wal)
        .unwrap()
        .set_len(0)
        .unwrap();
    let truncated_at = Instant::now();
    let status = app
        .wait_for_exit(Duration::from_secs(40))
        .expect("the server stops by itself");
    assert!(!status.success(), "and exits non-zero: {status:?}");
    let stopped_after = truncated_at.elapsed();
    let tally = workload.finish();
    let logs = app.logs().join("\n");
    assert!(
        logs.contains("STOPPING: the database files changed"),
        "{logs}"
    );
    // Once it noticed, nothing more was acknowledged: every refusal after
    // that is a 503 in the envelope, never a 201 that could not last.
    assert!(tally.bad_envelopes.is_empty(), "{:?}", tally.bad_envelopes);
    assert!(
        tally
            .refused
            .iter()
            .all(|(_, reply)| reply.status == 503 || reply.status == 422),
        "{:?}",
        tally
            .refused
            .iter()
            .map(|(_, reply)| reply.status)
            .collect::<Vec<_>>()
    );
    // The damage was not copied into the database: a restart serves a
    // consistent ledger (the one of the last checkpoint, or the WAL's valid
    // part), which passes the audit.
    assert_verify_passes(&app.db_path);
    let restarted = TestApp::spawn_on(&app.db_path);
    assert_eq!(restarted.get("/health").status, 200);
    // What the database file held before the damage is all there.
    assert_all_replay(&restarted, &opened);
    eprintln!("truncated WAL: the server stopped {stopped_after:?} after the truncation");
    drop(restarted);
    drop(folder);
}

#[test]
fn a_second_server_on_a_file_that_is_being_served_refuses_in_one_line() {
    if !crate::helpers::sqlite_only(
        "one server per SQLite file (many share a PostgreSQL database: tests/api/instances.rs)",
    ) {
        return;
    }
    let app = TestApp::spawn();
    let (status, _, stderr) = run_wallet(&[
        "serve",
        "--db",
        app.db_path.to_str().unwrap(),
        "--bind",
        "127.0.0.1:0",
    ]);
    assert!(!status.success());
    let line = stderr.trim();
    assert!(line.contains("another `wallet serve`"), "{line}");
    assert_eq!(line.lines().count(), 1, "{line}");
    assert_eq!(app.get("/health").status, 200, "the first one serves on");
}

#[test]
fn backup_removes_copies_left_by_backups_that_were_killed() {
    if !crate::helpers::sqlite_only("a backup is of a SQLite file") {
        return;
    }
    let app = TestApp::spawn();
    let folder = tempfile::tempdir().unwrap();
    let dest = folder.path().join("copy.db");
    // What a killed run leaves: a partial copy named for a process that no
    // longer runs (pid 2^22 + 1 is past the kernel's default pid_max).
    let stale = folder.path().join("old.db.partial-4194305");
    std::fs::write(&stale, vec![0_u8; 4096]).unwrap();
    let unrelated = folder.path().join("notes.txt");
    std::fs::write(&unrelated, b"keep me").unwrap();
    let (status, stdout, stderr) = run_wallet(&[
        "backup",
        dest.to_str().unwrap(),
        "--db",
        app.db_path.to_str().unwrap(),
    ]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(!stale.exists(), "the dead run's partial copy is gone");
    assert!(unrelated.exists());
    let left: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains(".partial-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_huge_repetitive_query_string_gets_a_short_answer() {
    let app = TestApp::spawn();
    let name = "x".repeat(2_000);
    let query: Vec<String> = (0..30).map(|_| format!("{name}=1")).collect();
    let response = app.get(&format!(
        "/wallets/user_alice/transactions?{}",
        query.join("&")
    ));
    assert_eq!(response.status, 400);
    let fields = response.body["error"]["details"]["fields"]
        .as_array()
        .unwrap();
    assert!(fields.len() <= QUERY_PROBLEMS_MAX, "{}", fields.len());
    for field in fields {
        assert!(field["field"].as_str().unwrap().chars().count() <= 65);
    }
    assert!(response.body.to_string().len() < 16 * 1024);
}

#[test]
fn the_dot_segments_are_refused_as_user_ids() {
    let app = TestApp::spawn();
    // Sent as written: HTTP clients rewrite dot segments before sending.
    let ask = |request: Vec<u8>| {
        let mut stream = TcpStream::connect(host(&app)).unwrap();
        stream.write_all(&request).unwrap();
        let (answer, _) = read_until_closed(&mut stream, Duration::from_secs(3));
        parse_response(&answer)
    };
    for segment in [".", "..", "%2E", "%2e%2E"] {
        let get = format!("GET /wallets/{segment}/balance HTTP/1.1\r\nHost: x\r\n\r\n");
        let response = ask(get.into_bytes());
        assert_eq!(response.status, 400, "{segment}: {response:?}");
        assert_eq!(
            response.reply().body.unwrap()["error"]["details"]["fields"][0]["field"],
            "userId"
        );
        let body =
            json!({"asset": "GOLD", "amount": 1, "idempotencyKey": format!("dots-{segment}")});
        let target = format!("/wallets/{segment}/topup");
        let response = ask(json_post(target.as_bytes(), body.to_string().as_bytes()));
        assert_eq!(response.status, 400, "{segment}: {response:?}");
    }
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn head_is_answered_on_get_routes_and_a_wrong_method_is_405_with_allow_before_any_key() {
    let (app, _secrets) = TestApp::spawn_with_keys(&[("ops", "read")], &[]);
    let anonymous = client_with_key(None);
    let head = anonymous.head(app.url("/health")).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.text().unwrap().is_empty(), "no body on HEAD");
    // A route that needs a key: HEAD needs it as GET does.
    let head = anonymous
        .head(app.url("/wallets/user_alice/balance"))
        .send()
        .unwrap();
    assert_eq!(head.status().as_u16(), 401);
    // A wrong method is 405 whoever asks, with the methods that would do.
    for (method, path, allow) in [
        ("DELETE", "/wallets/user_alice/balance", "GET, HEAD"),
        ("GET", "/wallets/user_alice/topup", "POST"),
        ("PUT", "/health", "GET, HEAD"),
    ] {
        let response = anonymous
            .request(method.parse().unwrap(), app.url(path))
            .send()
            .unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(
            response.headers().get("allow").unwrap().to_str().unwrap(),
            allow
        );
        let body: Value = response.json().unwrap();
        assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
    }
}

#[test]
fn a_refused_connection_gets_an_answer_it_can_read() {
    // The canned 503 the accept layer sends past the slots is a well-formed
    // HTTP answer in the envelope.
    let response: RawResponse = parse_response(wallet::http::connection::REFUSED_RESPONSE);
    assert_eq!(response.status, 503);
    assert_eq!(
        response.reply().body.unwrap()["error"]["code"],
        "SERVICE_OVERLOADED"
    );
}

/// libfaketime, from Debian's `faketime` package (`.ci/run` installs it).
const FAKETIME_LIBRARY: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

#[test]
fn a_clock_before_1970_is_refused_in_one_line_never_a_panic() {
    if !crate::helpers::tool_present(
        std::path::Path::new(FAKETIME_LIBRARY).exists(),
        FAKETIME_LIBRARY,
        "apt-get install faketime",
    ) {
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let db = folder.path().join("wallet.db");
    let db = db.to_str().unwrap();
    let (status, _, stderr) = run_wallet(&["migrate", "--db", db]);
    assert!(status.success(), "{stderr}");
    let before_1970 = |args: &[&str]| {
        let output =
            crate::helpers::without_wallet_variables(&mut crate::helpers::wallet_command())
                .args(args)
                .env("LD_PRELOAD", FAKETIME_LIBRARY)
                .env("FAKETIME", "@1969-06-01 00:00:00")
                .env("RUST_LOG", "off")
                .output()
                .unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    // The seed goes through the writer, which refuses to time an entry.
    let (status, stderr) = before_1970(&["seed", "--db", db]);
    assert!(!status.success());
    assert!(stderr.contains("before 1970"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let (status, stderr) = before_1970(&["serve", "--db", db, "--bind", "127.0.0.1:0"]);
    assert!(!status.success());
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("before 1970"), "{stderr}");
    // Nothing was written.
    let conn = rusqlite::Connection::open(db).unwrap();
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM ledger_entries", [], |row| row.get(0))
        .unwrap();
    assert_eq!(entries, 0);
}
