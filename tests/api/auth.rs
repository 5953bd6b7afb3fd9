//! Who may call: API keys and their scopes on the wire, revocation while the
//! server runs, idempotency keys scoped to the caller, the per-key rate
//! limit, a public address without keys starting locked, secrets kept
//! out of logs and the database file, the migration of a version 1 file, and
//! the HTTP server's own bounds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::Method;
use serde_json::json;

use crate::cli::{assert_one_line_failure, run_to_exit, serve_command, Serving};
use crate::helpers::{
    client_with_key, create_key, run_wallet, send, ApiResponse, TestApp, SEED_ENTRIES,
};

/// A revocation or a new key must be in force within this (the server looks
/// every 100 ms); a deadline for the test, not a measure of speed.
const CHANGE_SEEN_WITHIN: Duration = Duration::from_secs(10);

/// Every route but health, with the scope it needs.
const ROUTES: [(&str, &str, &str); 6] = [
    ("GET", "/assets", "read"),
    ("GET", "/wallets/user_alice/balance", "read"),
    ("GET", "/wallets/user_alice/transactions", "read"),
    ("POST", "/wallets/user_alice/topup", "grant"),
    ("POST", "/wallets/user_alice/bonus", "grant"),
    ("POST", "/wallets/user_alice/spend", "spend"),
];

/// One request to a route of `ROUTES` as `client`; each POST with a fresh
/// idempotency key and a valid body, so only access can refuse it.
fn call(app: &TestApp, client: &Client, method: &str, path: &str) -> ApiResponse {
    let request = client.request(
        Method::from_bytes(method.as_bytes()).unwrap(),
        app.url(path),
    );
    let request = if method == "POST" {
        request.json(&json!({
            "asset": "GOLD",
            "amount": 1,
            "idempotencyKey": uuid::Uuid::new_v4().to_string(),
        }))
    } else {
        request
    };
    send(request)
}

fn assert_unauthorized(response: &ApiResponse) {
    assert_eq!(response.status, 401, "{:?}", response.body);
    assert_eq!(response.error_code(), "UNAUTHORIZED");
    assert_eq!(response.header("www-authenticate"), Some("Bearer"));
}

fn db_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// Polls `condition` until it holds, failing the test after `CHANGE_SEEN_WITHIN`.
fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + CHANGE_SEEN_WITHIN;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn without_a_key_every_route_but_health_is_401_asking_for_a_bearer_key() {
    let (app, _) = TestApp::spawn_with_keys(&[("game", "admin")], &[]);
    for (method, path, _) in ROUTES {
        assert_unauthorized(&call(&app, &app.client, method, path));
    }
    let health = app.get("/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.data()["status"], "ok");
    assert_eq!(app.entry_count(), SEED_ENTRIES);
}

#[test]
fn an_unknown_malformed_or_non_bearer_key_is_401() {
    let (app, keys) = TestApp::spawn_with_keys(&[("game", "admin")], &[]);
    let unknown = format!("wk_{}", "0".repeat(keys[0].len() - 3));
    let near_miss = format!("{}0", &keys[0][..keys[0].len() - 1]);
    let tail_changed = if near_miss == keys[0] {
        format!("{}1", &keys[0][..keys[0].len() - 1])
    } else {
        near_miss
    };
    for header in [
        format!("Bearer {unknown}"),
        format!("Bearer {tail_changed}"),
        format!("Bearer {}", keys[0].to_uppercase()),
        format!("Basic {}", keys[0]),
        keys[0].clone(),
        "Bearer ".to_owned(),
        "Bearer x".to_owned(),
    ] {
        let response = send(
            app.client
                .get(app.url("/wallets/user_alice/balance"))
                .header("authorization", &header),
        );
        assert_unauthorized(&response);
    }
    // The right key, with the scheme in any case, passes.
    let response = send(
        app.client
            .get(app.url("/wallets/user_alice/balance"))
            .header("authorization", format!("bearer {}", keys[0])),
    );
    assert_eq!(response.status, 200, "{:?}", response.body);
}

/// Goal: each scope opens exactly its routes; a refused request is 403
/// naming the scope, and writes nothing.
#[test]
fn each_scope_reaches_its_own_routes_and_is_forbidden_the_others() {
    let scopes = ["read", "spend", "grant", "admin"];
    let named: Vec<(&str, &str)> = scopes.iter().map(|scope| (*scope, *scope)).collect();
    let (app, keys) = TestApp::spawn_with_keys(&named, &[]);
    let mut entries = app.entry_count();
    for (scope, key) in scopes.iter().zip(&keys) {
        let client = client_with_key(Some(key));
        for (method, path, needed) in ROUTES {
            let response = call(&app, &client, method, path);
            if *scope == "admin" || *scope == needed {
                let expected = if method == "POST" { 201 } else { 200 };
                assert_eq!(
                    response.status, expected,
                    "{scope} on {method} {path}: {:?}",
                    response.body
                );
                entries += i64::from(method == "POST");
            } else {
                assert_eq!(
                    response.status, 403,
                    "{scope} on {method} {path}: {:?}",
                    response.body
                );
                assert_eq!(response.error_code(), "FORBIDDEN");
                assert_eq!(response.body["error"]["details"]["requiredScope"], needed);
            }
            assert_eq!(app.entry_count(), entries, "{scope} on {method} {path}");
        }
    }
}

/// Goal: the scope is checked before the body, so a caller without it
/// learns nothing from validation.
#[test]
fn a_missing_scope_is_403_even_for_an_invalid_body() {
    let (app, keys) = TestApp::spawn_with_keys(&[("game", "read,spend")], &[]);
    let client = client_with_key(Some(&keys[0]));
    let response = send(
        client
            .post(app.url("/wallets/user_alice/topup"))
            .header("content-type", "application/json")
            .body("{not json"),
    );
    assert_eq!(response.status, 403, "{:?}", response.body);
    assert_eq!(response.error_code(), "FORBIDDEN");
}

#[test]
fn a_key_revoked_by_the_cli_while_the_server_runs_is_refused_without_a_restart() {
    let (app, keys) = TestApp::spawn_with_keys(&[("game", "read"), ("webhook", "read")], &[]);
    let (game, webhook) = (
        client_with_key(Some(&keys[0])),
        client_with_key(Some(&keys[1])),
    );
    let balance = |client: &Client| send(client.get(app.url("/wallets/user_alice/balance")));
    assert_eq!(balance(&game).status, 200);

    let (status, stdout, stderr) =
        run_wallet(&["keys", "revoke", "game", "--db", db_str(&app.db_path)]);
    assert!(status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("revoked key game"), "{stdout}");
    eventually("the revoked key is refused", || {
        balance(&game).status == 401
    });
    for _ in 0..5 {
        assert_unauthorized(&balance(&game));
    }
    assert_eq!(balance(&webhook).status, 200, "the other key still works");

    let (status, _, stderr) = run_wallet(&["keys", "revoke", "game", "--db", db_str(&app.db_path)]);
    assert!(!status.success());
    assert!(stderr.contains("no active key is named game"), "{stderr}");
}

/// Goal: the first key closes an open service at once, and revoking the
/// last key never opens it again.
#[test]
fn the_first_key_created_while_serving_closes_the_service_and_revoking_it_keeps_it_closed() {
    let app = TestApp::spawn();
    let anonymous_balance = || app.get("/wallets/user_alice/balance").status;
    assert_eq!(anonymous_balance(), 200, "no keys on loopback: open");

    let key = create_key(&app.db_path, "first", "read");
    eventually("keys are required", || anonymous_balance() == 401);
    let keyed = client_with_key(Some(&key));
    assert_eq!(
        send(keyed.get(app.url("/wallets/user_alice/balance"))).status,
        200
    );

    let (status, _, _) = run_wallet(&["keys", "revoke", "first", "--db", db_str(&app.db_path)]);
    assert!(status.success());
    eventually("the revoked key is refused", || {
        send(keyed.get(app.url("/wallets/user_alice/balance"))).status == 401
    });
    assert_eq!(anonymous_balance(), 401, "still closed with no active key");
}

/// Goal: the same idempotency key from two callers is two requests; neither
/// caller replays, or is refused by, the other's entry.
#[test]
fn the_same_idempotency_key_from_two_api_keys_is_two_requests() {
    let (app, keys) =
        TestApp::spawn_with_keys(&[("shop-eu", "grant,read"), ("shop-us", "grant,read")], &[]);
    let (eu, us) = (
        client_with_key(Some(&keys[0])),
        client_with_key(Some(&keys[1])),
    );
    let topup = |client: &Client, amount: u64| {
        send(
            client
                .post(app.url("/wallets/user_alice/topup"))
                .json(&json!({
                    "asset": "GOLD", "amount": amount, "idempotencyKey": "order-1",
                })),
        )
    };
    let first = topup(&eu, 10);
    assert_eq!(first.status, 201, "{:?}", first.body);
    // Another caller, the same key, another amount: new, not 422.
    let other = topup(&us, 25);
    assert_eq!(other.status, 201, "{:?}", other.body);
    assert_ne!(
        first.data()["transaction"]["id"],
        other.data()["transaction"]["id"]
    );
    // Each caller's retry replays its own entry, and only its own.
    let eu_again = topup(&eu, 10);
    assert_eq!(eu_again.status, 200);
    assert_eq!(eu_again.header("idempotent-replayed"), Some("true"));
    assert_eq!(eu_again.data(), first.data());
    let us_again = topup(&us, 25);
    assert_eq!(us_again.status, 200);
    assert_eq!(us_again.data(), other.data());
    assert_eq!(topup(&eu, 25).error_code(), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.entry_count(), SEED_ENTRIES + 2);
    assert_eq!(app_balance(&app, &eu), 1035);
}

fn app_balance(app: &TestApp, client: &Client) -> i64 {
    let response = send(client.get(app.url("/wallets/user_alice/balance")));
    response.data()["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["asset"] == "GOLD")
        .and_then(|row| row["balance"].as_i64())
        .unwrap()
}

/// Goal: a key past its burst is refused with 429 and `Retry-After`, other
/// keys are not, and after waiting as told the key is served again.
#[test]
fn a_key_over_its_rate_limit_gets_429_with_retry_after_and_recovers() {
    let (app, keys) = TestApp::spawn_with_keys(
        &[("busy", "read"), ("calm", "read")],
        &["--rate-limit-per-second", "1", "--rate-limit-burst", "3"],
    );
    let (busy, calm) = (
        client_with_key(Some(&keys[0])),
        client_with_key(Some(&keys[1])),
    );
    let assets = |client: &Client| send(client.get(app.url("/assets")));
    // The burst of 3 passes; then, refilling at 1 a second, the bucket runs
    // dry within a few more requests however slowly they go out.
    for _ in 0..3 {
        assert_eq!(assets(&busy).status, 200);
    }
    let refused = (0..20)
        .map(|_| assets(&busy))
        .find(|response| response.status != 200)
        .expect("the limit was never reached");
    assert_eq!(refused.status, 429, "{:?}", refused.body);
    assert_eq!(refused.error_code(), "RATE_LIMITED");
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("whole seconds");
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    assert_eq!(assets(&calm).status, 200, "the limit is per key");
    std::thread::sleep(Duration::from_secs(retry_after));
    assert_eq!(assets(&busy).status, 200, "recovered after Retry-After");
}

#[test]
fn a_bad_rate_limit_setting_exits_non_zero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for value in ["0", "-1", "many", "1000001"] {
        let mut command = serve_command(&dir.path().join("wallet.db"));
        command.args([
            "--bind",
            "127.0.0.1:0",
            &format!("--rate-limit-burst={value}"),
        ]);
        let (status, stdout, stderr) = run_to_exit(command);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains("rate-limit-burst"), "{value}: {line}");
    }
}

/// Goal: a service other machines can reach never runs open by accident, yet
/// always starts: with no key it is locked (the open routes answer, every
/// other route is 401) and says once how to create the first key; that key,
/// created while it serves, unlocks it for keyed callers only.
#[test]
fn a_public_address_without_a_key_starts_locked_until_the_first_key_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let mut locked = serve_command(&db_path);
    locked.args(["--bind", "0.0.0.0:0"]);
    let mut server = Serving::start(locked);
    let port = server
        .wait_until_listening()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let base = format!("http://127.0.0.1:{port}");
    let anonymous = Client::new();
    let call = |client: &Client, method: &str, path: &str| {
        let request = client.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{base}{path}"),
        );
        send(if method == "POST" {
            request.json(&json!({"asset": "GOLD", "amount": 1, "idempotencyKey": uuid::Uuid::new_v4().to_string()}))
        } else {
            request
        })
    };
    for open in ["/health", "/openapi.json"] {
        let response = send(anonymous.get(format!("{base}{open}")));
        assert_eq!(response.status, 200, "{open}: {:?}", response.body);
    }
    for (method, path, _) in ROUTES {
        assert_unauthorized(&call(&anonymous, method, path));
    }
    let notices: Vec<String> = server
        .log()
        .iter()
        .filter(|line| line.contains("LOCKED"))
        .cloned()
        .collect();
    assert_eq!(notices.len(), 1, "said once: {notices:?}");
    for form in [
        "wallet keys create",
        "docker run --rm -v wallet-data:/data wallet keys create",
        "docker compose run --rm wallet keys create",
        "fly ssh console -C",
    ] {
        assert!(notices[0].contains(form), "{form}: {}", notices[0]);
    }

    let key = create_key(&db_path, "first", "read");
    let keyed = client_with_key(Some(&key));
    eventually("the first key unlocks the service", || {
        call(&keyed, "GET", "/assets").status == 200
    });
    // An empty ledger, not the demo seed: this is a production address.
    assert_eq!(call(&keyed, "GET", "/assets").data(), &json!([]));
    assert_unauthorized(&call(&anonymous, "GET", "/assets"));
    let response = call(&keyed, "POST", "/wallets/user_alice/topup");
    assert_eq!(response.status, 403, "read only: {:?}", response.body);
    assert_eq!(
        server
            .log()
            .iter()
            .filter(|line| line.contains("LOCKED"))
            .count(),
        1,
        "not repeated once unlocked"
    );
}

/// Goal: `--insecure-no-auth`, and its variable spelled as any other yes/no
/// setting, still serves a public address open; a keyed one needs its key.
#[test]
fn insecure_no_auth_serves_a_public_address_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let open_assets = |mut server: Serving| {
        let port = server
            .wait_until_listening()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        send(Client::new().get(format!("http://127.0.0.1:{port}/assets")))
    };
    let mut flagged = serve_command(&db_path);
    flagged.args(["--bind", "0.0.0.0:0", "--insecure-no-auth"]);
    assert_eq!(open_assets(Serving::start(flagged)).status, 200);

    for value in ["true", "1", "yes"] {
        let mut from_environment = serve_command(&db_path);
        from_environment
            .args(["--bind", "0.0.0.0:0"])
            .env("WALLET_INSECURE_NO_AUTH", value);
        assert_eq!(
            open_assets(Serving::start(from_environment)).status,
            200,
            "{value}"
        );
    }

    create_key(&db_path, "public", "read");
    let mut keyed = serve_command(&db_path);
    keyed.args(["--bind", "0.0.0.0:0"]);
    assert_unauthorized(&open_assets(Serving::start(keyed)));
}

/// Goal: a secret is shown once, by `keys create`, and nowhere after: not in
/// the server's log (requests with it, with a wrong key, a revocation), not
/// in `keys list`, not in the database file, its WAL or shared memory.
#[test]
fn a_secret_never_reaches_the_logs_the_key_list_or_the_database_file() {
    let (app, keys) = TestApp::spawn_with_keys(&[("game", "read,spend")], &[]);
    let secret = &keys[0];
    let client = client_with_key(Some(secret));
    assert_eq!(send(client.get(app.url("/assets"))).status, 200);
    let spent = send(
        client
            .post(app.url("/wallets/user_alice/spend"))
            .json(&json!({
                "asset": "GOLD", "amount": 1, "idempotencyKey": "sword",
            })),
    );
    assert_eq!(spent.status, 201);
    assert_eq!(
        call(&app, &client, "POST", "/wallets/user_alice/topup").status,
        403
    );
    let wrong = format!("{}0", &secret[..secret.len() - 1]);
    send(client_with_key(Some(&wrong)).get(app.url("/assets")));
    let (status, listing, _) = run_wallet(&["keys", "list", "--db", db_str(&app.db_path)]);
    assert!(status.success());
    run_wallet(&["keys", "revoke", "game", "--db", db_str(&app.db_path)]);
    eventually("the revoked key is refused", || {
        send(client.get(app.url("/assets"))).status == 401
    });

    // The random part alone, too: a log that cut the prefix would still leak.
    let random_part = &secret[3..];
    let logs = app.logs().join("\n");
    assert!(logs.contains("/assets"), "the log has the requests: {logs}");
    assert!(!logs.contains(random_part), "the secret is in the log");
    assert!(!listing.contains(random_part), "the secret is in keys list");
    assert!(listing.contains("game"), "{listing}");
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", app.db_path.display());
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let found = bytes
            .windows(random_part.len())
            .any(|window| window == random_part.as_bytes());
        assert!(!found, "the secret is in {path}");
    }
}

#[test]
fn keys_list_shows_names_scopes_times_and_revocations_and_last_use_is_recorded() {
    // A folder of the test's own: it outlives the server.
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("wallet.db");
    let keys = [
        create_key(&db_path, "game", "spend,read"),
        create_key(&db_path, "webhook", "grant"),
    ];
    let app = TestApp::start(&db_path, &[], None);
    let list = || {
        let (status, stdout, stderr) = run_wallet(&["keys", "list", "--db", db_str(&db_path)]);
        assert!(status.success(), "{stderr}");
        stdout
    };
    let row = |listing: &str, name: &str| -> String {
        listing
            .lines()
            .find(|line| line.starts_with(&format!("{name}\t")))
            .unwrap_or_else(|| panic!("no row for {name} in {listing}"))
            .to_owned()
    };
    let before = list();
    assert!(
        before.starts_with("NAME\tSCOPES\tCREATED\tLAST USED\tSTATUS"),
        "{before}"
    );
    assert!(row(&before, "game").contains("\tread,spend\t"), "{before}");
    assert!(
        row(&before, "game").ends_with("\tnever\tactive"),
        "{before}"
    );

    let game = client_with_key(Some(&keys[0]));
    assert_eq!(send(game.get(app.url("/assets"))).status, 200);
    run_wallet(&["keys", "revoke", "webhook", "--db", db_str(&db_path)]);
    // Last uses are written at most once a minute, and when the server stops.
    assert_eq!(app.terminate().code(), Some(0));
    let after = list();
    let game_row = row(&after, "game");
    assert!(!game_row.contains("never"), "{after}");
    assert!(
        row(&after, "webhook").contains("\tnever\trevoked 20"),
        "{after}"
    );
    for key in &keys {
        assert!(!after.contains(&key[3..]));
    }
}

#[test]
fn a_bad_key_name_or_scope_list_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("wallet.db");
    for (name, scopes, mentions) in [
        ("game server", "read", "--name"),
        (&*"k".repeat(65), "read", "--name"),
        ("game", "read,mint", "mint"),
        ("game", "", "--scopes"),
        ("game", "read,read", "twice"),
    ] {
        let (status, stdout, stderr) = run_wallet(&[
            "keys",
            "create",
            "--name",
            name,
            "--scopes",
            scopes,
            "--db",
            db_str(&db),
        ]);
        let line = assert_one_line_failure(status, &stdout, &stderr);
        assert!(line.contains(mentions), "{name} {scopes}: {line}");
    }
    create_key(&db, "game", "read");
    let (status, stdout, stderr) = run_wallet(&[
        "keys",
        "create",
        "--name",
        "game",
        "--scopes",
        "admin",
        "--db",
        db_str(&db),
    ]);
    let line = assert_one_line_failure(status, &stdout, &stderr);
    assert!(line.contains("exists already"), "{line}");
}

/// Goal: a version 1 file (the schema of the first release, entries in it)
/// is migrated by the new binary: every entry kept, `verify` clean, and its
/// idempotency keys still replay for the anonymous caller they belong to.
#[test]
fn a_version_1_file_migrates_keeping_every_entry_and_its_replays() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("v1.db");
    {
        let conn = rusqlite::Connection::open(&db_path).unwrap();
        conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
        conn.execute_batch(include_str!("../../schema.sql"))
            .unwrap();
        conn.execute_batch(include_str!("../../seed.sql")).unwrap();
        // A topup of 1000 and a spend of 100 for user_alice, as version 1
        // wrote them: one entry and two postings each.
        conn.execute_batch(
            "INSERT INTO accounts (id, owner_type, owner_id, asset_type_id, created_at)
                  SELECT 100, 'USER', 'user_alice', id, 0 FROM asset_types WHERE symbol = 'GOLD';
             INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, idempotency_key, reference_id, note, created_at)
                  SELECT 1, '11111111-1111-4111-8111-111111111111', 'TOPUP', t.id, a.id, 100,
                         1000, 'seed:user_alice:GOLD', NULL, NULL, 1795392000000
                    FROM asset_types t JOIN accounts a ON a.asset_type_id = t.id
                   WHERE t.symbol = 'GOLD' AND a.owner_type = 'SYSTEM';
             INSERT INTO postings SELECT 100, 1, 1000, 1000;
             INSERT INTO postings SELECT a.id, 1, -1000, -1000 FROM accounts a
                   JOIN asset_types t ON t.id = a.asset_type_id
                  WHERE t.symbol = 'GOLD' AND a.owner_type = 'SYSTEM';
             INSERT INTO ledger_entries (seq, id, kind, asset_type_id, debit_account_id,
                     credit_account_id, amount, idempotency_key, reference_id, note, created_at)
                  SELECT 2, '22222222-2222-4222-8222-222222222222', 'SPEND', t.id, 100, a.id,
                         100, 'order-1', 'ref-1', 'a sword', 1795392001000
                    FROM asset_types t JOIN accounts a ON a.asset_type_id = t.id
                   WHERE t.symbol = 'GOLD' AND a.owner_type = 'SYSTEM';
             INSERT INTO postings SELECT 100, 2, -100, 900;
             INSERT INTO postings SELECT a.id, 2, 100, -900 FROM accounts a
                   JOIN asset_types t ON t.id = a.asset_type_id
                  WHERE t.symbol = 'GOLD' AND a.owner_type = 'SYSTEM';
             DROP TABLE temp.seed_grants;
             PRAGMA user_version = 1;",
        )
        .unwrap();
    }
    let app = TestApp::spawn_on(&db_path);
    assert_eq!(app.entry_count(), 2, "nothing lost, nothing seeded over it");
    assert_eq!(app.balance("user_alice", "GOLD"), 900);
    let replay = app.post(
        "/wallets/user_alice/spend",
        &json!({"asset": "GOLD", "amount": 100, "idempotencyKey": "order-1",
                "referenceId": "ref-1", "note": "a sword"}),
    );
    assert_eq!(replay.status, 200, "{:?}", replay.body);
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));
    assert_eq!(
        replay.data()["transaction"]["id"],
        "22222222-2222-4222-8222-222222222222"
    );
    assert_eq!(replay.data()["balance"], 900);
    assert_eq!(
        app.post_spend("user_alice", "GOLD", 5, "order-1")
            .error_code(),
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(
        app.post_spend("user_alice", "GOLD", 5, "order-2").status,
        201
    );
    assert_eq!(app.terminate().code(), Some(0));

    let (status, stdout, stderr) = run_wallet(&["verify", "--db", db_str(&db_path)]);
    assert!(status.success(), "{stdout}\n{stderr}");
    // Migrated step by step, the file has the schema of a fresh one.
    let fresh = dir.path().join("fresh.db");
    assert!(run_wallet(&["migrate", "--db", db_str(&fresh)]).0.success());
    let schema = |path: &Path| -> Vec<(String, String, Option<String>)> {
        rusqlite::Connection::open(path)
            .unwrap()
            .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(schema(&db_path), schema(&fresh));
}

/// One raw request `head` (without its closing blank line) on a new
/// connection; the status line of the answer.
fn raw_status_line(app: &TestApp, head: &str) -> String {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let _ = write!(stream, "{head}\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or_default().to_owned()
}

/// Goal: a request head past the parser's bounds (its size, its number of
/// header lines) is refused before the service sees it, and the server
/// serves on.
#[test]
fn a_request_head_past_its_bounds_is_refused_and_the_server_serves_on() {
    let app = TestApp::spawn_with_key();
    let padding = "a".repeat(wallet::limits::HTTP_HEAD_BYTES_MAX);
    let status = raw_status_line(
        &app,
        &format!("GET /health HTTP/1.1\r\nHost: x\r\nX-Padding: {padding}"),
    );
    assert!(status.contains(" 431 "), "{status:?}");
    let header_lines = |count: usize| -> String {
        (0..count)
            .map(|index| format!("\r\nX-Header-{index}: 1"))
            .collect()
    };
    // Host and HTTP_HEADERS_MAX more: one line too many.
    let too_many = header_lines(wallet::limits::HTTP_HEADERS_MAX);
    let status = raw_status_line(&app, &format!("GET /health HTTP/1.1\r\nHost: x{too_many}"));
    assert!(status.contains(" 431 "), "{status:?}");
    // Host, Connection and the rest: exactly the bound, served.
    let at_bound = header_lines(wallet::limits::HTTP_HEADERS_MAX - 2);
    let status = raw_status_line(
        &app,
        &format!("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close{at_bound}"),
    );
    assert!(status.contains(" 200 "), "{status:?}");
    assert_eq!(app.get("/assets").status, 200);
}

/// Goal: a client that opens a connection and sends its request head too
/// slowly is cut off, so it cannot hold a worker's connection for ever.
#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let app = TestApp::spawn_with_key();
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://")).unwrap();
    let bound = wallet::limits::HTTP_CLIENT_REQUEST_TIMEOUT;
    stream.set_read_timeout(Some(bound * 6)).unwrap();
    let _ = write!(stream, "GET /assets HTTP/1.1\r\nHost: x\r\n");
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    assert!(
        read.is_ok(),
        "the server never closed the connection: {read:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
    assert_eq!(app.get("/assets").status, 200);
}
